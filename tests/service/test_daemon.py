"""`streamer run` as a daemon: draining on SIGTERM, resuming after SIGKILL, reloading on SIGHUP.

Each test runs the real command in a subprocess on a generated clip or a lavfi pattern.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.media import write_clip


def start(config: Path, *flags: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "streamer", "--log-level", "info", *flags, "run", str(config)],
        cwd=config.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def lines_of(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def wait_until(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def file_job(folder: Path, frames: int, fps: int, checkpoint: bool = False) -> Path:
    """A config reading a generated clip at its own pace into out.jsonl (optionally checkpointed)."""
    clip = write_clip(folder / "long.mp4", frames=frames, fps=fps)
    body = (
        f'[[sources]]\nid = "job"\ntype = "file"\npath = "{clip}"\nrealtime = true\n'
        '[[sinks]]\ntype = "jsonl"\npath = "out.jsonl"\n'
    )
    if checkpoint:
        body += '[run]\ncheckpoint = "state/job.checkpoint"\ncheckpoint_interval_s = 0.2\n'
    config = folder / "job.toml"
    config.write_text(body)
    return config


def test_run_when_sigterm_during_a_file_delivers_every_frame_read(tmp_path):
    config = file_job(tmp_path, frames=300, fps=60)
    process = start(config)
    out = tmp_path / "out.jsonl"
    wait_until(lambda: len(lines_of(out)) >= 20)

    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=30)

    assert process.returncode == 0, stderr
    read = int(re.search(r"source job: \d+ frames \((\d+) read\)", stdout)[1])
    assert 20 <= read < 300
    assert [line["frame_index"] for line in lines_of(out)] == list(range(read))


def test_run_when_killed_then_restarted_resumes_with_no_duplicate_and_no_gap(tmp_path):
    config = file_job(tmp_path, frames=240, fps=80, checkpoint=True)
    checkpoint = tmp_path / "state" / "job.checkpoint"
    out = tmp_path / "out.jsonl"
    first = start(config)
    wait_until(lambda: checkpoint.exists() and len(lines_of(out)) >= 60)

    first.kill()
    first.communicate(timeout=30)
    killed_at = len(lines_of(out))
    assert killed_at < 240, "the first run should have been killed before the end"
    saved = json.loads(checkpoint.read_text())["sources"]["job"]["index"]

    second = start(config)
    stdout, stderr = second.communicate(timeout=60)

    context = f"saved={saved} killed_at={killed_at}\n{stdout}\n{stderr}"
    assert second.returncode == 0, context
    assert "resuming after frame" in stderr, context
    assert [line["frame_index"] for line in lines_of(out)] == list(range(240)), context
    assert saved <= killed_at - 1, context  # the checkpoint never runs ahead of the file
    assert f"job: {239 - saved} frames" in stdout, context  # only the rest was decoded and run again


def test_run_when_restarted_after_finishing_does_nothing_twice(tmp_path):
    config = file_job(tmp_path, frames=30, fps=120, checkpoint=True)
    out = tmp_path / "out.jsonl"
    assert start(config).wait(timeout=60) == 0

    second = start(config)
    stdout, stderr = second.communicate(timeout=60)

    assert second.returncode == 0, stderr
    assert "job: 0 frames" in stdout
    assert [line["frame_index"] for line in lines_of(out)] == list(range(30))


def lavfi(source_id: str) -> str:
    return f'[[sources]]\nid = "{source_id}"\ntype = "lavfi"\ngraph = "testsrc2=size=160x96:rate=10"\n'


def test_run_when_sighup_applies_a_valid_config_and_keeps_running_on_an_invalid_one(tmp_path):
    sinks = '[[sinks]]\ntype = "jsonl"\npath = "out.jsonl"\n'
    config = tmp_path / "cams.toml"
    config.write_text(lavfi("cam1") + sinks)
    out = tmp_path / "out.jsonl"
    process = start(config)
    try:
        wait_until(lambda: len(lines_of(out)) >= 3)

        config.write_text(lavfi("cam1") + lavfi("cam2") + sinks)
        process.send_signal(signal.SIGHUP)
        wait_until(lambda: any(line["source"] == "cam2" for line in lines_of(out)))

        config.write_text(lavfi("cam2") + '[[sources]]\ntype = "lavfi"\nbogus = 1\n' + sinks)
        process.send_signal(signal.SIGHUP)
        counted = {source: sum(line["source"] == source for line in lines_of(out)) for source in ("cam1", "cam2")}
        wait_until(lambda: all(
            sum(line["source"] == source for line in lines_of(out)) > counted[source] + 3 for source in counted
        ))
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=30)

    assert process.returncode == 0, stderr
    assert "reload: 1 sources added, 0 removed" in stderr
    assert "is invalid, keeping the running config" in stderr and "$.sources[1].bogus" in stderr
    assert "source cam1:" in stdout and "source cam2:" in stdout


def test_run_when_log_format_json_writes_one_object_per_state_change(tmp_path):
    config = file_job(tmp_path, frames=20, fps=200)
    process = start(config, "--log-format", "json")
    _, stderr = process.communicate(timeout=60)

    records = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    changes = [record["message"] for record in records if record["logger"] == "streamer.sources"]
    assert process.returncode == 0
    assert changes == ["source job: new -> connecting", "source job: connecting -> running", "source job: running -> ended: end of file"]
    assert all({"time", "level", "logger", "message"} <= record.keys() for record in records)
