"""`streamer run` with a secret in every place a secret can go: none of them in anything it writes.

A real daemon (subprocess) with `[server]`, an RTSP camera that serves (password in the URL), cameras
that are down (a user-only credential, a query token) so they reconnect, an HLS playlist that is down
(query token), a webhook that is down (header from the environment, signing secret, URL token: its
results spool on disk), a real mosquitto that wants a password, a registry token and the admin token
in the environment. It is reloaded with SIGHUP (a source with one more secret) and stopped with
SIGTERM; stdout, stderr, the JSONL output, the spool folder, /status and /metrics are searched.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.rtsp import RtspServer, free_port, gstreamer_available
from tests.service.test_daemon import lines_of, wait_until
from tests.sinks.mosquitto import Mosquitto, mosquitto_binary, passwd_binary

pytestmark = pytest.mark.skipif(
    not (gstreamer_available() and mosquitto_binary() and passwd_binary()), reason="needs GStreamer RTSP and mosquitto"
)

SECRET_NAMES = (
    "rtsp_password", "rtsp_user_only", "rtsp_query", "hls_query", "webhook_header", "webhook_secret",
    "webhook_query", "mqtt_password", "registry_token", "admin_token", "reload_password",
)  # fmt: skip


def down(source_id: str, url: str, kind: str = "rtsp") -> str:
    return (
        f'[[sources]]\nid = "{source_id}"\ntype = "{kind}"\nurl = "{url}"\n'
        "open_timeout_s = 1\nbackoff_initial_s = 0.1\nbackoff_max_s = 0.3\n"
    )


def config_text(folder: Path, secret: dict[str, str], camera: RtspServer, broker: Mosquitto, port: int) -> str:
    closed = free_port()
    return (
        '[model]\nid = "centerface"\n'
        f'[server]\nport = {port}\ntoken_env = "ADMIN_TOKEN"\n'
        + down("cam", camera.url("/stream", "viewer", secret["rtsp_password"]))
        + down("door", f"rtsp://{secret['rtsp_user_only']}@127.0.0.1:{closed}/x")
        + down("gate", f"rtsp://127.0.0.1:{closed}/live?channel=1&token={secret['rtsp_query']}")
        + down("lobby", f"http://127.0.0.1:{closed}/live/index.m3u8?token={secret['hls_query']}", kind="hls")
        + f'[[sinks]]\ntype = "jsonl"\npath = "{folder / "out.jsonl"}"\n'
        + f'[[sinks]]\ntype = "webhook"\nurl = "http://127.0.0.1:{closed}/hook?key={secret["webhook_query"]}"\n'
        f'spool_dir = "{folder / "spool"}"\nsecret_env = "HOOK_SECRET"\nbackoff_s = 0.1\nbackoff_max_s = 0.3\n'
        '[sinks.header_env]\nAuthorization = "HOOK_AUTH"\n'
        f'[[sinks]]\ntype = "mqtt"\nport = {broker.port}\nusername = "streamer"\npassword_env = "MQTT_PASSWORD"\n'
    )


def fetch(port: int, path: str, token: str) -> str:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.read().decode()


def everything_written(folder: Path, outputs: list[str]) -> str:
    files = [
        path for path in folder.rglob("*")
        if path.is_file() and path.suffix != ".toml" and not {"broker", "logs"} & set(path.parts)
    ]  # fmt: skip
    return "\n".join(outputs + [path.read_text(errors="replace") for path in files])


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_run_when_secrets_are_everywhere_writes_none_of_them(tmp_path, log_format):
    secret = {name: f"Zq{secrets.token_hex(8)}" for name in SECRET_NAMES}
    port = free_port()
    with RtspServer(user="viewer", password=secret["rtsp_password"]) as camera, \
            Mosquitto(tmp_path / "broker", users={"streamer": secret["mqtt_password"]}) as broker:
        config = tmp_path / "cams.toml"
        config.write_text(config_text(tmp_path, secret, camera, broker, port))
        environment = {
            **os.environ, "ADMIN_TOKEN": secret["admin_token"], "HOOK_SECRET": secret["webhook_secret"],
            "HOOK_AUTH": f"Bearer {secret['webhook_header']}", "MQTT_PASSWORD": secret["mqtt_password"],
            "STREAMER_REGISTRY_TOKEN": secret["registry_token"],
        }  # fmt: skip
        # Debug logs outgrow a pipe's buffer long before the run ends: an undrained pipe would block the
        # daemon's writes (and with them its event loop), so they go to files read at the end.
        stdout_file, stderr_file = (tmp_path / "logs" / "stdout.txt"), (tmp_path / "logs" / "stderr.txt")
        stdout_file.parent.mkdir()
        with stdout_file.open("w") as stdout_sink, stderr_file.open("w") as stderr_sink:
            process = subprocess.Popen(
                [sys.executable, "-m", "streamer", "--log-level", "debug", "--log-format", log_format, "run", str(config)],
                cwd=tmp_path, env=environment, stdout=stdout_sink, stderr=stderr_sink, text=True,
            )
        served: list[str] = []
        try:
            out = tmp_path / "out.jsonl"
            wait_until(lambda: any(line["source"] == "cam" for line in lines_of(out)), timeout=90)
            wait_until(lambda: '"reconnects": ' in (status := fetch(port, "/status", secret["admin_token"]))
                       and "reconnecting" in status, timeout=30)
            time.sleep(2)  # a few more reconnects, webhook retries and spool writes
            served += [fetch(port, "/status", secret["admin_token"]), fetch(port, "/metrics", secret["admin_token"])]

            added = down("hall", camera.url("/stream", "viewer", secret["reload_password"]).replace("/stream", "/none"))
            config.write_text(config.read_text().replace("[[sinks]]", added + "[[sinks]]", 1))
            process.send_signal(signal.SIGHUP)
            wait_until(lambda: '"hall"' in fetch(port, "/status", secret["admin_token"]), timeout=30)
            time.sleep(1.5)
            served += [fetch(port, "/status", secret["admin_token"]), fetch(port, "/metrics", secret["admin_token"])]
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
    stdout, stderr = stdout_file.read_text(), stderr_file.read_text()

    written = everything_written(tmp_path, [stdout, stderr, *served])
    assert "reconnecting" in written and "***" in written and "hall" in stdout + stderr  # the run did what it should
    assert list((tmp_path / "spool").rglob("*")), "the webhook spooled nothing"
    leaked = {name: value for name, value in secret.items() if value in written}
    assert leaked == {}, f"secrets found in the output: {sorted(leaked)}"
