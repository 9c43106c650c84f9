"""`streamer status [URL]` against a real daemon (`streamer run` in a subprocess) with a lavfi camera."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from streamer.console.remote import address_of, status_url

TOKEN = "c1-test-token-5b2f"


def daemon_config(folder: Path, token_env: str | None = None) -> Path:
    config = folder / "daemon.toml"
    server = "[server]\nport = 0\n" + (f'token_env = "{token_env}"\n' if token_env else "")
    config.write_text(server + '[[sources]]\nid = "pat"\ntype = "lavfi"\ngraph = "testsrc2=size=160x96:rate=10"\n')
    return config


def started(config: Path, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """The daemon and the URL it logs it serves on (it binds port 0: any free one)."""
    process = subprocess.Popen([sys.executable, "-m", "streamer", "--log-level", "info", "run", str(config)],
                               cwd=config.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    found: list[str] = []
    ready = threading.Event()

    def read_log() -> None:
        for line in process.stderr:  # read to the end, so the daemon never blocks on a full pipe
            match = re.search(r"serving .* on (http://\S+)", line)
            if match and not found:
                found.append(match[1])
                ready.set()
        ready.set()

    threading.Thread(target=read_log, daemon=True).start()
    if not ready.wait(60) or not found:
        process.kill()
        pytest.fail(f"the daemon did not start serving: exit code {process.wait()}")
    return process, found[0]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """One daemon for the module's tests (a model load each would cost seconds), with a token."""
    folder = tmp_path_factory.mktemp("daemon")
    env = {**os.environ, "C1_TEST_TOKEN": TOKEN}
    process, url = started(daemon_config(folder, token_env="C1_TEST_TOKEN"), env)
    try:
        yield url, folder
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def status(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streamer", "status", *args], capture_output=True, text=True,
                          timeout=30, env={**os.environ, **(env or {})})


def test_status_when_a_daemon_runs_a_lavfi_camera_prints_its_row_and_json(daemon):
    url, _ = daemon
    deadline = time.monotonic() + 20
    while True:
        done = status(url, "--token-env", "C1_TEST_TOKEN", env={"C1_TEST_TOKEN": TOKEN})
        rows = [line for line in done.stdout.splitlines() if "pat" in line]
        if done.returncode == 0 and rows and "running" in rows[0] or time.monotonic() > deadline:
            break
        time.sleep(0.3)

    assert done.returncode == 0, done.stderr
    assert len(rows) >= 1 and "running" in rows[0], done.stdout
    fps_in, fps_out = map(float, rows[0].split()[2:4])
    assert fps_in > 0 and fps_out > 0, rows
    assert "source" in done.stdout and "model centerface" in done.stdout
    body = json.loads(status(url, "--json", env={"STREAMER_ADMIN_TOKEN": TOKEN}).stdout)
    (pat,) = [source for source in body["sources"] if source["id"] == "pat"]
    assert pat["frames"] > 0 and pat["latency_ms"]["p99"] >= pat["latency_ms"]["p50"] > 0


def test_status_when_the_token_is_missing_or_nothing_listens_exits_1_and_says_why(daemon):
    url, _ = daemon

    refused = status(url, env={"STREAMER_ADMIN_TOKEN": ""})
    nobody = status("http://127.0.0.1:9/")

    assert refused.returncode == 1 and "HTTP 401" in refused.stderr and TOKEN not in refused.stderr
    assert nobody.returncode == 1 and "nothing answers at http://127.0.0.1:9/status" in nobody.stderr
    assert "docs/errors.md#statuserror" in nobody.stderr and refused.stdout == nobody.stdout == ""


def test_address_of_when_given_a_config_takes_its_server_address_and_token_variable(tmp_path, monkeypatch):
    config = tmp_path / "served.toml"
    config.write_text('[server]\nport = 9555\ntoken_env = "C1_OTHER"\n[[sources]]\ntype = "lavfi"\ngraph = "testsrc2"\n')
    monkeypatch.setenv("C1_OTHER", "secret")

    assert address_of(None, str(config), None) == ("http://127.0.0.1:9555", "secret")
    assert address_of("10.0.0.2:8080", None, "C1_OTHER") == ("10.0.0.2:8080", "secret")
    assert address_of(None, None, "C1_UNSET_VARIABLE") == ("http://127.0.0.1:9464", None)
    assert status_url("10.0.0.2:8080") == "http://10.0.0.2:8080/status"
    assert status_url("http://host/prefix/status/") == "http://host/prefix/status"
