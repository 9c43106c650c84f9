"""A real RTSP server for the tests: tests/rtsp_server.py run under the system Python, one per RtspServer.

    server = RtspServer(width=320, height=240).start()
    av.open(server.url(), options={"rtsp_transport": "tcp"})
    server.kill()                      # a crash: clients see the stream end
    server.restart(width=640)          # same port, new size
    server.pause(); server.resume()    # a stall: TCP stays open, no data flows
"""

from __future__ import annotations

import functools
import selectors
import signal
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's Python, which has `gi`; the project's may not
SERVER_SCRIPT = Path(__file__).with_name("rtsp_server.py")
PACKAGES = (
    "python3-gst-1.0 gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good "
    "gstreamer1.0-plugins-ugly"
)
MISSING_REASON = f"needs GStreamer's RTSP server under {SYSTEM_PYTHON}: apt-get install {PACKAGES}"
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0


class RtspServerError(RuntimeError):
    """The test RTSP server did not start."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@functools.cache
def gstreamer_available() -> bool:
    """Whether the server script finds GStreamer and every element it uses."""
    try:
        command = [SYSTEM_PYTHON, str(SERVER_SCRIPT), "--check"]
        check = subprocess.run(command, capture_output=True, check=False, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return check.returncode == 0


class RtspServer:
    """One server process on a fixed loopback port; every mount serves the same H.264 stream."""

    def __init__(
        self,
        port: int | None = None,
        *,
        paths: tuple[str, ...] = ("/stream",),
        width: int = 320,
        height: int = 240,
        fps: int = 15,
        user: str | None = None,
        password: str | None = None,
        source: str | Path = "pattern",
        gop: int | None = None,
        own_playback: bool = False,
    ) -> None:
        self.port = port or free_port()
        self.paths = paths
        self.width, self.height, self.fps = width, height, fps
        self.user, self.password = user, password
        self.source = str(source)
        self.gop, self.own_playback = gop, own_playback  # keyframe interval (None: fps); an encoder per client
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr: Any = None

    def __enter__(self) -> RtspServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def url(self, path: str = "/stream", user: str | None = None, password: str | None = None) -> str:
        login = "" if user is None else quote(user, safe="") + (f":{quote(password, safe='')}" if password else "")
        return f"rtsp://{login}{'@' if login else ''}127.0.0.1:{self.port}{path}"

    def start(self, timeout: float = START_TIMEOUT_S) -> RtspServer:
        """Start the process and wait for its READY line."""
        if self.running:
            raise RtspServerError(f"the RTSP server on port {self.port} is already running")
        self._close()
        self._stderr = tempfile.TemporaryFile()
        self._process = subprocess.Popen(
            [SYSTEM_PYTHON, str(SERVER_SCRIPT), *self._arguments()], stdout=subprocess.PIPE, stderr=self._stderr
        )
        line = self._read_line(timeout)
        if line.split() != ["READY", str(self.port)]:
            self.kill()
            raise RtspServerError(f"the RTSP server did not start within {timeout} s (said {line!r}): {self.stderr()}")
        return self

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time; closes the pipes. Safe to call twice."""
        if self._process is None:
            return
        if self.running:
            self._process.send_signal(signal.SIGCONT)  # a paused process would hold SIGTERM until resumed
            self._process.terminate()
            try:
                self._process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close()

    def kill(self) -> None:
        """SIGKILL: a crash. Clients lose the connection at once."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    def pause(self) -> None:
        """SIGSTOP: a stall. Connections stay open, no data flows, new connections get no answer."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def restart(self, **changes: Any) -> RtspServer:
        """Stop (if running) and start again on the same port, e.g. restart(width=640, height=480)."""
        self.stop()
        for name, value in changes.items():
            if not hasattr(self, name) or name == "port":
                raise TypeError(f"restart() cannot change {name!r}")
            setattr(self, name, str(value) if name == "source" else value)
        return self.start()

    def stderr(self) -> str:
        """What the server wrote to stderr so far."""
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace").strip()

    def _close(self) -> None:
        if self._process is not None and self._process.stdout is not None:
            self._process.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
        self._process = self._stderr = None

    def _arguments(self) -> list[str]:
        arguments = ["--port", str(self.port), "--width", str(self.width), "--height", str(self.height)]
        arguments += ["--fps", str(self.fps), "--source", self.source]
        for path in self.paths:
            arguments += ["--path", path]
        if self.user is not None:
            arguments += ["--user", self.user, "--password", self.password or ""]
        if self.gop is not None:
            arguments += ["--gop", str(self.gop)]
        if self.own_playback:
            arguments.append("--own-playback")
        return arguments

    def _read_line(self, timeout: float) -> str:
        """The first stdout line, or '' if none comes within `timeout` or the process exits first."""
        assert self._process is not None and self._process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self._process.stdout, selectors.EVENT_READ)
            if not selector.select(timeout):
                return ""
        return self._process.stdout.readline().decode(errors="replace").strip()

    def _signal(self, number: signal.Signals) -> None:
        if not self.running:
            raise RtspServerError(f"the RTSP server on port {self.port} is not running")
        assert self._process is not None
        self._process.send_signal(number)
