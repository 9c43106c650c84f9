"""A real MQTT broker for the tests: Debian's `mosquitto`, one process per Mosquitto, on loopback.

    broker = Mosquitto(directory).start()          # anonymous; Mosquitto(directory, users={"u": "p"}) for auth
    aiomqtt.Client("127.0.0.1", broker.port)
    broker.restart()                               # SIGTERM, then the same port again
    broker.pause(); broker.kill()                  # a hang, then a crash (SIGSTOP, SIGKILL)

Persistence is on, in `directory`, saved at every change: a persistent session and its queued QoS 1
messages survive a stop() or kill() and start().
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.rtsp import free_port

PACKAGE = "mosquitto"
MISSING_REASON = f"needs the mosquitto MQTT broker: apt-get install {PACKAGE}"
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0


class MosquittoError(RuntimeError):
    """The test broker did not start."""


@functools.cache
def mosquitto_binary() -> str | None:
    """The broker's executable: on PATH, or where Debian puts it (/usr/sbin is not always on PATH)."""
    found = shutil.which("mosquitto")
    if found is None and os.access("/usr/sbin/mosquitto", os.X_OK):
        found = "/usr/sbin/mosquitto"
    return found


def passwd_binary() -> str | None:
    return shutil.which("mosquitto_passwd") or next(
        (path for path in ("/usr/bin/mosquitto_passwd", "/usr/sbin/mosquitto_passwd") if os.access(path, os.X_OK)),
        None,
    )


class Mosquitto:
    """One broker process on 127.0.0.1:<port>, its config, password file, log and database in `directory`."""

    def __init__(self, directory: Path, port: int | None = None, *, users: dict[str, str] | None = None) -> None:
        self.directory = Path(directory)
        self.port = port or free_port()
        self.users = users or {}
        self._process: subprocess.Popen[bytes] | None = None
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config_path = self.directory / "mosquitto.conf"
        self.log_path = self.directory / "mosquitto.log"
        self._write_config()

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = START_TIMEOUT_S) -> Mosquitto:
        """Start the broker and wait until it accepts TCP connections."""
        if self.running:
            raise MosquittoError(f"the broker on port {self.port} is already running")
        binary = mosquitto_binary()
        if binary is None:
            raise MosquittoError(MISSING_REASON)
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen([binary, "-c", str(self.config_path)], stdout=log, stderr=log)
        self._wait_until_listening(timeout)
        return self

    def stop(self) -> None:
        """SIGTERM (mosquitto saves its database), then SIGKILL if it does not exit in time."""
        if self._process is None:
            return
        if self.running:
            self._process.send_signal(signal.SIGCONT)  # a paused broker would hold SIGTERM until resumed
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.kill()
        self._process = None

    def kill(self) -> None:
        """SIGKILL: a crash. Clients lose the connection at once; what reached the socket unread is lost."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._process = None

    def pause(self) -> None:
        """SIGSTOP: connections stay open and take data, but nothing is read or acknowledged."""
        if not self.running:
            raise MosquittoError(f"the broker on port {self.port} is not running")
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT: a paused broker reads what waited on its connections and acknowledges it."""
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)

    def restart(self) -> Mosquitto:
        """Stop (if running) and start again on the same port, with the same database."""
        self.stop()
        return self.start()

    def log(self) -> str:
        """What the broker logged so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _write_config(self) -> None:
        lines = [
            f"listener {self.port} 127.0.0.1",
            f"allow_anonymous {'false' if self.users else 'true'}",
            "persistence true",
            f"persistence_location {self.directory}/",
            "autosave_on_changes true",
            "autosave_interval 1",  # save after every change, so even kill() loses nothing queued
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # otherwise it drops to `mosquitto`, who cannot write our tmp dir
        if self.users:
            lines.append(f"password_file {self._write_passwords()}")
        self.config_path.write_text("\n".join(lines) + "\n")

    def _write_passwords(self) -> Path:
        tool = passwd_binary()
        if tool is None:
            raise MosquittoError(f"mosquitto_passwd not found: apt-get install {PACKAGE}")
        path = self.directory / "passwords"
        path.write_text("")
        path.chmod(0o600)
        for user, password in self.users.items():
            subprocess.run([tool, "-b", str(path), user, password], check=True, capture_output=True)
        return path

    def _wait_until_listening(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                self._process = None
                raise MosquittoError(f"mosquitto exited at start-up: {self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.02)
        self.kill()
        raise MosquittoError(f"mosquitto did not listen on port {self.port} within {timeout} s: {self.log()}")
