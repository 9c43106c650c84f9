"""`streamer run`'s progress display: drawn from a real stream's counts into a rich Console, shown on a
terminal only (the real CLI on a pty and on pipes), and the model download's bytes and speed."""

from __future__ import annotations

import io
import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from rich.console import Console

import streamer
from streamer.console.display import RunDisplay, file_frames, shows_progress
from streamer.console.tables import status_view
from streamer.engine.cache import ModelCache
from streamer.engine.download import download_progress, fetch_package
from tests.engine.registry_server import payload, publish, running_registry
from tests.media import write_clip

PATTERN = "testsrc2=size=160x96:rate=15"
ETA = re.compile(r"\d+:\d\d:\d\d")


def terminal(width: int = 140) -> Console:
    return Console(file=io.StringIO(), force_terminal=True, width=width, color_system=None)


def rendered(renderable, width: int = 140) -> str:
    console = terminal(width)
    console.print(renderable)
    return console.file.getvalue()


def row_of(text: str, source_id: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(source_id))


async def test_run_display_when_a_file_and_a_pattern_run_shows_a_bar_with_eta_and_a_table_row(centerface, tmp_path):
    clip = write_clip(tmp_path / "job.mp4", frames=90, fps=30)
    config = {
        "sources": [{"type": "file", "id": "job", "path": str(clip), "realtime": True},
                    {"type": "lavfi", "id": "cam", "graph": PATTERN}],
        "batching": {"max_batch_size": 1, "max_wait_ms": 5},
    }
    display = RunDisplay(terminal(), "centerface")
    assert "loading model centerface" in rendered(display.renderable())
    async with streamer.open(config, model=centerface, results=False) as stream, display.watch(stream):
        with anyio.fail_after(20):
            while not (display.body and 20 <= _read(display.body, "job") < 80 and _read(display.body, "cam") > 3):
                await anyio.sleep(0.05)
        await anyio.sleep(0.6)  # a few refreshes: rich's speed, then the ETA
        text = rendered(display.renderable())
        stream.stop()

    bar = row_of(text, "job")
    done, total = map(int, re.search(r"(\d+)/(\d+)", bar).groups())
    assert total == 90 and 20 <= done < 90 and "━" in bar and ETA.search(bar), bar
    assert "cam" in text and not any(line.startswith("job ") and "running" in line for line in text.splitlines()[1:])
    cam = row_of(text, "cam").split()
    assert cam[1] == "running" and float(cam[2]) > 0 and float(cam[3]) > 0, cam  # state, fps in, fps out
    assert re.search(r"\d+/\d+", " ".join(cam[4:])), cam  # latency p50/p99
    assert "model centerface" in text


def _read(body: dict, source_id: str) -> int:
    return next((source["read"] for source in body["sources"] if source["id"] == source_id), 0)


def test_status_view_when_a_camera_drops_and_reconnects_shows_each_reason_and_its_last_error():
    source = {"id": "door", "state": "reconnecting", "fps_in": 0.0, "fps": 0.0, "dropped": 3, "stale": 0,
              "over_max_fps": 40, "paused_frames": 0, "reconnects": 2, "latency_ms": None, "queue_depth": 0,
              "last_error": "source 'door' (rtsp 'rtsp://***@cam/live'): cannot open it: connection refused", "error": None}
    sink = {"name": "webhook https://hooks.example/x", "written": 7, "queue_depth": 5, "failed": 1, "dropped": 0}
    body = {"model": {"id": "centerface", "backend": "onnxruntime"}, "uptime_s": 65, "frames": 12,
            "sources": [source], "sinks": [sink, {"name": "topics", "written": 12}]}

    text = rendered(status_view(body))

    door = row_of(text, "door ")
    assert "reconnecting" in door and "queue_full 3, max_fps 40" in door and " 2 " in door
    assert row_of(text, "door:") == "door: cannot open it: connection refused"  # the row names the source
    assert "up 0:01:05" in text
    hook = row_of(text, "webhook")
    assert hook.split()[-4:] == ["7", "5", "1", "0"]  # written, queued, failed, dropped
    assert "topics" not in text


def test_file_frames_when_the_container_declares_its_count_is_capped_by_max_frames(tmp_path):
    clip = write_clip(tmp_path / "a.mp4", frames=45, fps=15)
    config = streamer.load_config({"sources": [{"type": "file", "path": str(clip)}]}).sources[0]
    capped = streamer.load_config({"sources": [{"type": "file", "path": str(clip), "max_frames": 10}]}).sources[0]
    missing = streamer.load_config({"sources": [{"type": "file", "path": str(tmp_path / "none.mp4")}]}).sources[0]

    assert (file_frames(config), file_frames(capped), file_frames(missing)) == (45, 10, None)


async def test_download_when_the_display_is_set_shows_bytes_and_speed_and_none_draws_nothing(tmp_path, capsys):
    display = RunDisplay(terminal(), "acme/tiny")
    async with running_registry() as registry:
        document = publish(registry, "acme/tiny", {"model.onnx": payload(300_000, seed=3)})
        with download_progress(display.download):
            await fetch_package(document, document.packages[0], ModelCache(tmp_path / "a"), backoff_s=0.001)
        with download_progress(None):
            await fetch_package(document, document.packages[0], ModelCache(tmp_path / "b"), progress=True)

    text = rendered(display.downloads)
    assert "acme/tiny" in text and "300.0/300.0 kB" in text and re.search(r"[\d.]+ [kMG]?B/s", text), text
    assert capsys.readouterr().err == ""


def test_shows_progress_when_quiet_json_or_not_a_terminal_is_false():
    with open(os.devnull, "w") as pipe_like:
        assert not shows_progress(pipe_like)
    main, other = pty.openpty()
    with os.fdopen(other, "w") as tty:
        assert shows_progress(tty) is (os.environ.get("TERM", "").lower() not in ("dumb", "unknown"))
        assert not shows_progress(tty, quiet=True) and not shows_progress(tty, log_format="json")
    os.close(main)


# ---- the real CLI --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def job(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("job")
    clip = write_clip(folder / "job.mp4", frames=60, fps=30)
    config = folder / "job.toml"
    config.write_text(f'[[sources]]\nid = "job"\ntype = "file"\npath = "{clip}"\nrealtime = true\n'
                      '[[sinks]]\ntype = "jsonl"\npath = "out.jsonl"\n')
    return config


def on_pty(config: Path, before: tuple[str, ...] = (), after: tuple[str, ...] = ()) -> tuple[int, str, str]:
    """`streamer [before] run config [after]` with stderr on a terminal (a pty): exit code, stdout, and what
    the terminal got."""
    main, other = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "streamer", *before, "run", str(config), *after], cwd=config.parent,
        stdout=subprocess.PIPE, stderr=other, text=True, env={**os.environ, "TERM": "xterm-256color"},
    )
    os.close(other)
    screen = _read_all(main)
    stdout = process.communicate(timeout=60)[0]
    return process.returncode, stdout, screen


def test_run_when_stderr_is_a_terminal_shows_the_bar_and_whole_log_lines_then_the_summary(job):
    code, stdout, screen = on_pty(job, ("--log-level", "info"))

    assert code == 0, screen
    assert "━" in screen and "60/60" in screen and "job" in screen, screen[-2000:]
    logged = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO streamer[.\w]*: source job: \w+ -> running[^\r\n]*\r?\n")
    assert logged.search(screen), screen[-3000:]  # above the display, in one piece
    assert "source job: 60 frames (60 read)" in stdout


@pytest.mark.parametrize("before, after", [(("--log-format", "json"), ()), ((), ("--quiet",))], ids=["json", "quiet"])
def test_run_when_quiet_or_json_on_a_terminal_draws_no_progress_and_logs_as_usual(job, before, after):
    code, stdout, screen = on_pty(job, ("--log-level", "info", *before), after)

    assert code == 0, screen
    lines = [line for line in screen.replace("\r", "").splitlines() if line]
    assert "━" not in screen and "\x1b[" not in screen, screen[-2000:]
    assert any("streamer" in line for line in lines), "the info logs are still written"
    if before:
        assert all(json.loads(line)["level"] for line in lines)
    else:
        assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ", line) for line in lines), lines
    assert "source job: 60 frames (60 read)" in stdout


def test_run_when_stderr_is_not_a_terminal_writes_nothing_but_the_summary(job):
    done = subprocess.run([sys.executable, "-m", "streamer", "run", str(job)], cwd=job.parent,
                          capture_output=True, text=True, timeout=60)

    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert "source job: 60 frames (60 read)" in done.stdout


async def test_models_pull_when_stderr_is_a_terminal_shows_the_download_bytes_and_speed(tmp_path):
    async with running_registry(delay_s=0.05) as registry:
        publish(registry, "acme/tiny", {"model.onnx": payload(1_500_000, seed=4)})
        main, other = pty.openpty()
        process = await anyio.open_process(
            [sys.executable, "-m", "streamer", "models", "pull", "acme/tiny", "--registry-url", registry.url,
             "--cache-dir", str(tmp_path)], stderr=other, env={**os.environ, "TERM": "xterm-256color"})
        os.close(other)
        screen = await anyio.to_thread.run_sync(_read_all, main)
        await process.wait()

    assert process.returncode == 0, screen
    assert "acme/tiny" in screen and "1.5/1.5 MB" in screen and re.search(r"[\d.]+ [kM]B/s", screen), screen[-2000:]


def _read_all(main: int) -> str:
    screen = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: the child has closed the terminal
            break
        if not chunk:
            break
        screen += chunk
    os.close(main)
    return screen.decode(errors="replace")
