"""The `streamer` command: validate, run, exit codes, and stopping on a signal."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.media import cut, write_clip

ROOT = Path(__file__).resolve().parents[1]


def streamer_cli(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "streamer", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def write_config(path: Path, body: str) -> Path:
    path.write_text(body)
    return path


def test_validate_when_valid_prints_ok(tmp_path):
    config = write_config(tmp_path / "ok.toml", '[[sources]]\ntype = "file"\npath = "x.mp4"\n')

    done = streamer_cli("validate", str(config), cwd=tmp_path)

    assert done.returncode == 0 and done.stdout.strip() == "OK"


def test_validate_when_invalid_names_the_key_path_and_exits_2(tmp_path):
    config = write_config(
        tmp_path / "bad.toml",
        '[[sources]]\ntype = "file"\npath = "x.mp4"\n[[sources]]\ntype = "file"\npath = "y.mp4"\nurl = 3\n',
    )

    done = streamer_cli("validate", str(config), cwd=tmp_path)

    assert done.returncode == 2
    assert "$.sources[1].url" in done.stderr and "bad.toml" in done.stderr


def test_run_when_invalid_exits_2_before_loading_anything(tmp_path):
    config = write_config(tmp_path / "bad.toml", '[[sources]]\ntype = "ndi"\n')

    done = streamer_cli("run", str(config), cwd=tmp_path)

    assert done.returncode == 2 and "$.sources[0].type" in done.stderr


def test_run_writes_jsonl_and_prints_a_summary(tmp_path):
    write_clip(tmp_path / "media" / "clip.mp4", frames=20)
    config = write_config(
        tmp_path / "run.toml",
        '[[sources]]\nid = "cam"\ntype = "file"\npath = "media/clip.mp4"\n'
        '[[sinks]]\ntype = "jsonl"\npath = "out/run.jsonl"\n',
    )

    done = streamer_cli("run", str(config), cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in (tmp_path / "out" / "run.jsonl").read_text().splitlines()]
    assert [line["frame_index"] for line in lines] == list(range(20))
    assert {line["source"] for line in lines} == {"cam"}
    assert "frames: 20" in done.stdout and "out/run.jsonl" in done.stdout


def test_run_when_a_source_fails_still_finishes_the_others_and_exits_1(tmp_path):
    write_clip(tmp_path / "good.mp4", frames=10)
    config = write_config(
        tmp_path / "run.toml",
        '[[sources]]\ntype = "file"\npath = "good.mp4"\n'
        '[[sources]]\nid = "gone"\ntype = "file"\npath = "gone.mp4"\n'
        '[[sinks]]\ntype = "jsonl"\npath = "out.jsonl"\n',
    )

    done = streamer_cli("run", str(config), cwd=tmp_path)

    assert done.returncode == 1
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 10
    assert "gone.mp4" in done.stdout + done.stderr and "FAILED" in done.stdout


@pytest.mark.parametrize(("tolerate", "exit_code"), [("false", 1), ("true", 0)])
def test_run_when_a_file_was_cut_short_exits_1_unless_damage_is_tolerated(tmp_path, tolerate, exit_code):
    cut(write_clip(tmp_path / "cut.mp4", frames=90, faststart=True))
    config = write_config(
        tmp_path / "run.toml", f'[[sources]]\nid = "cut"\ntype = "file"\npath = "cut.mp4"\ntolerate_damage = {tolerate}\n'
    )

    done = streamer_cli("run", str(config), cwd=tmp_path)

    assert done.returncode == exit_code, done.stderr
    assert "damaged: decoded" in done.stdout and "of the 90 frames it declares" in done.stdout


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_run_when_signalled_stops_within_two_seconds_and_flushes(tmp_path, signum):
    config = write_config(
        tmp_path / "live.toml",
        '[[sources]]\nid = "live"\ntype = "lavfi"\ngraph = "testsrc2=size=160x120:rate=20"\n'
        '[[sinks]]\ntype = "jsonl"\npath = "out.jsonl"\n',
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "streamer", "run", str(config)], cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    out = tmp_path / "out.jsonl"
    deadline = time.monotonic() + 60
    while (not out.exists() or len(out.read_text().splitlines()) < 5) and time.monotonic() < deadline:
        time.sleep(0.05)

    os.kill(process.pid, signum)
    signalled = time.monotonic()
    stdout, stderr = process.communicate(timeout=30)

    assert time.monotonic() - signalled < 2.0, stderr
    assert process.returncode == 0, stderr
    assert f"WARNING streamer: {signal.Signals(signum).name}: stopping, draining to the sinks" in stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    indexes = [line["frame_index"] for line in lines]
    assert indexes == sorted(set(indexes))  # in order, none twice (a busy machine may drop live frames)
    assert f"frames: {len(lines)}" in stdout


def test_run_quickstart_finds_the_face_in_every_frame_and_writes_both_outputs(tmp_path):
    (tmp_path / "examples").symlink_to(ROOT / "examples")

    done = streamer_cli("run", "examples/quickstart.toml", cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in (tmp_path / "out" / "quickstart.jsonl").read_text().splitlines()]
    assert len(lines) == 100
    assert all(len(line["detections"]) == 1 for line in lines)
    assert (tmp_path / "out" / "quickstart.mp4").stat().st_size > 10_000
    assert "frames: 100" in done.stdout and "out/quickstart.mp4" in done.stdout


def test_validate_when_the_model_id_is_misspelled_names_it_at_model_id_and_exits_2(tmp_path):
    config = write_config(tmp_path / "typo.toml", '[model]\nid = "centerfcae"\n[[sources]]\ntype = "file"\npath = "x.mp4"\n')

    done = streamer_cli("validate", str(config), cwd=tmp_path)

    assert done.returncode == 2
    assert "$.model.id" in done.stderr and "'centerfcae'" in done.stderr
    assert "did you mean 'centerface'?" in done.stderr


def test_validate_when_the_model_file_is_text_named_onnx_says_it_is_not_an_onnx_model_and_exits_2(tmp_path):
    (tmp_path / "model.onnx").write_text("this is not a model\n")
    config = write_config(tmp_path / "text.toml", '[model]\nid = "model.onnx"\n[[sources]]\ntype = "file"\npath = "x.mp4"\n')

    done = streamer_cli("validate", str(config), cwd=tmp_path)

    assert done.returncode == 2
    assert "$.model.id" in done.stderr and "'model.onnx': not an ONNX model" in done.stderr


def test_validate_when_the_model_file_is_a_real_onnx_model_prints_ok(tmp_path, yolo_path):
    config = write_config(tmp_path / "yolo.toml", f'[model]\nid = "{yolo_path}"\n[[sources]]\ntype = "file"\npath = "x.mp4"\n')

    done = streamer_cli("validate", str(config), cwd=tmp_path)

    assert done.returncode == 0 and done.stdout.strip() == "OK", done.stderr


def test_run_when_the_model_id_is_misspelled_exits_2_before_opening_anything(tmp_path):
    write_clip(tmp_path / "clip.mp4", frames=5)
    config = write_config(
        tmp_path / "typo.toml",
        '[model]\nid = "centerfcae"\n[[sources]]\ntype = "file"\npath = "clip.mp4"\n'
        '[[sinks]]\ntype = "jsonl"\npath = "out/run.jsonl"\n',
    )

    done = streamer_cli("run", str(config), cwd=tmp_path)

    assert done.returncode == 2 and "$.model.id" in done.stderr
    assert not (tmp_path / "out").exists()


def test_run_when_the_config_is_invalid_and_logs_are_json_says_so_in_json(tmp_path):
    config = write_config(tmp_path / "bad.toml", '[[sources]]\ntype = "ndi"\n')

    done = streamer_cli("--log-format", "json", "run", str(config), cwd=tmp_path)

    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    record = json.loads(line)
    assert record["level"] == "error" and record["key_path"] == "$.sources[0].type"


def test_run_when_logs_are_json_and_sigterm_stops_it_every_stderr_line_is_json(tmp_path):
    config = write_config(
        tmp_path / "live.toml",
        '[[sources]]\nid = "live"\ntype = "lavfi"\ngraph = "testsrc2=size=160x120:rate=20"\n'
        '[[sinks]]\ntype = "jsonl"\npath = "out.jsonl"\n',
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "streamer", "--log-format", "json", "--log-level", "info", "run", str(config)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    out = tmp_path / "out.jsonl"
    deadline = time.monotonic() + 60
    while (not out.exists() or len(out.read_text().splitlines()) < 3) and time.monotonic() < deadline:
        time.sleep(0.05)

    os.kill(process.pid, signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)

    assert process.returncode == 0, stderr
    records = [json.loads(line) for line in stderr.splitlines()]
    assert any(record["message"] == "SIGTERM: stopping, draining to the sinks" for record in records)
    assert all(record["level"] in ("debug", "info", "warning", "error") for record in records)


def test_models_quantize_when_int8_writes_the_package_the_id_then_loads_and_reports_agreement(
    tmp_path, monkeypatch, astronaut
):
    from tests.media import write_moving_face_clip

    monkeypatch.setenv("STREAMER_MODELS_DIR", str(tmp_path / "models"))
    clip = write_moving_face_clip(tmp_path / "face.mp4", astronaut, frames=4)

    done = streamer_cli("models", "quantize", "nudenet-320n", "--int8", "--calibrate", str(clip), "--frames", "4",
                        cwd=tmp_path)
    described = streamer_cli("describe", "model", "nudenet-320n", cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    assert "calibrated on 4 frames" in done.stdout and "fp32 boxes matched by int8:" in done.stdout
    assert (tmp_path / "models" / "nudenet-320n" / "nudenet-3.4.2-int8" / "model.int8.onnx").is_file()
    assert described.returncode == 0, described.stderr
    assert "chose nudenet-3.4.2 (onnxruntime, fp32" in described.stdout
    assert 'used only when allowed: quantization = ["fp32", "int8"]' in described.stdout


def test_models_quantize_when_neither_int8_nor_a_clip_is_given_exits_2_naming_them(tmp_path):
    done = streamer_cli("models", "quantize", "nudenet-320n", cwd=tmp_path)

    assert done.returncode == 2
    assert "--int8" in done.stderr and "--calibrate" in done.stderr
