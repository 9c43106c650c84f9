"""The pipeline end to end on real decoded video and the real default model."""

from __future__ import annotations

import json

import anyio
import numpy as np
import pytest

import streamer
from streamer.config import load_config
from streamer.errors import ConfigError, SinkError
from streamer.pipeline.runner import resolve_models
from tests.media import write_clip, write_image_clip


def config(*sources, sinks=(), stages=(), **batching):
    return {
        "sources": list(sources),
        "sinks": list(sinks),
        "stages": list(stages),
        "batching": {"max_batch_size": 4, "max_wait_ms": 5, **batching},
    }


def file_source(path, id, **extra):
    return {"type": "file", "id": id, "path": str(path), **extra}


async def collect(cfg, model, **open_options):
    async with streamer.open(cfg, model=model, **open_options) as stream:
        results = [result async for result in stream]
    return results, stream.summary


async def test_open_when_a_file_ends_delivers_every_frame_in_order(centerface, clip):
    results, summary = await collect(config(file_source(clip, "a")), centerface)

    assert [r.frame_index for r in results] == list(range(30))
    assert summary.frames == 30 and summary.failed == []
    assert all(r.model.model_id == "centerface" for r in results)


async def test_open_with_two_sources_keeps_each_in_order_and_loses_nothing(centerface, tmp_path):
    first = write_clip(tmp_path / "first.mp4", frames=25)
    second = write_clip(tmp_path / "second.mp4", frames=40, width=96, height=160)

    results, _ = await collect(config(file_source(first, "a"), file_source(second, "b")), centerface)

    for source, count in (("a", 25), ("b", 40)):
        assert [r.frame_index for r in results if r.source_id == source] == list(range(count))


def unknown_codec_clip(path):
    """A Matroska file whose video track names a codec FFmpeg has no decoder for."""
    mkv = write_clip(path.with_suffix(".tmp.mkv"), frames=5).read_bytes()
    path.write_bytes(mkv.replace(b"V_MPEG4/ISO/AVC", b"V_QUUX/FAKE/XYZ"))
    return path


async def test_open_when_sources_are_broken_the_good_one_runs_to_the_end(centerface, clip, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    cfg = config(
        file_source(broken, "broken"),
        file_source(tmp_path / "missing.mp4", "missing"),
        file_source(unknown_codec_clip(tmp_path / "odd.mkv"), "odd"),
        file_source(clip, "good"),
    )

    results, summary = await collect(cfg, centerface)

    assert [r.frame_index for r in results if r.source_id == "good"] == list(range(30))
    failed = {report.source_id: report.error for report in summary.failed}
    assert set(failed) == {"broken", "missing", "odd"}
    assert "missing.mp4" in failed["missing"] and "no such file" in failed["missing"]
    assert "broken.mp4" in failed["broken"]
    assert "no decoder" in failed["odd"]


async def test_open_finds_the_face_in_a_clip_of_the_astronaut(centerface, astronaut, tmp_path):
    path = write_image_clip(tmp_path / "astronaut.mp4", astronaut, frames=3)

    results, summary = await collect(config(file_source(path, "astronaut")), centerface)

    assert [len(r.detections) for r in results] == [1, 1, 1]
    assert summary.detections == 3


async def test_open_with_lavfi_source_yields_its_frames(centerface):
    cfg = config({"type": "lavfi", "id": "pattern", "graph": "testsrc2=size=128x96:rate=30", "max_frames": 12,
                  "realtime": False, "policy": "block"})

    results, _ = await collect(cfg, centerface)

    assert [r.frame_index for r in results] == list(range(12))
    assert results[0].frame.width == 128 and results[3].frame.pts == pytest.approx(3 / 30)


async def test_open_when_the_consumer_is_slow_latest_policy_drops_and_counts(centerface):
    cfg = config({"type": "lavfi", "id": "live", "graph": "testsrc2=size=64x48:rate=1000", "max_frames": 300,
                  "realtime": False, "queue_size": 2})
    seen = 0

    async with streamer.open(cfg, model=centerface) as stream:
        async for _ in stream:
            seen += 1
            await anyio.sleep(0.01)

    report = stream.summary.sources["live"]
    assert report.dropped > 0
    assert seen + report.dropped == 300


async def test_open_when_stopped_flushes_what_was_read_and_ends(centerface, clip, tmp_path):
    out = tmp_path / "out.jsonl"
    cfg = config(file_source(clip, "loop", loop=True, realtime=True), sinks=[{"type": "jsonl", "path": str(out)}])

    with anyio.fail_after(10):
        async with streamer.open(cfg, model=centerface) as stream:
            async for result in stream:
                if result.frame_index == 5:
                    stream.stop()
                    stopped_at = anyio.current_time()
            ended_at = anyio.current_time()

    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert ended_at - stopped_at < 2.0
    assert [line["frame_index"] for line in lines] == list(range(stream.summary.frames))


async def test_open_filter_stage_keeps_only_confident_detections_of_named_classes(centerface, astronaut, tmp_path):
    path = write_image_clip(tmp_path / "astronaut.mp4", astronaut, frames=2)
    keep_faces = config(file_source(path, "a"), stages=[{"type": "filter", "classes": ["face"], "min_confidence": 0.5}])
    keep_cats = config(file_source(path, "a"), stages=[{"type": "filter", "classes": ["cat"]}])

    faces, _ = await collect(keep_faces, centerface)
    cats, _ = await collect(keep_cats, centerface)

    assert [len(r.detections) for r in faces] == [1, 1]
    assert [len(r.detections) for r in cats] == [0, 0]


async def test_open_custom_stage_can_annotate_and_drop_results(centerface, clip, tmp_path, monkeypatch):
    (tmp_path / "my_stages.py").write_text(
        "def every_other(result, label):\n"
        "    if result.frame_index % 2:\n"
        "        return None\n"
        "    result.extra['label'] = label\n"
        "    return result\n"
    )
    monkeypatch.chdir(tmp_path)
    cfg = config(file_source(clip, "a"), stages=[{"type": "custom", "function": "my_stages:every_other",
                                                  "options": {"label": "even"}}])

    results, summary = await collect(cfg, centerface)

    assert [r.frame_index for r in results] == list(range(0, 30, 2))
    assert {r.extra["label"] for r in results} == {"even"}
    assert summary.frames == 30


async def test_open_when_a_sink_cannot_write_fails_at_start_naming_the_path(centerface, clip, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    cfg = config(file_source(clip, "a"), sinks=[{"type": "jsonl", "path": str(blocker / "out.jsonl")}])

    with pytest.raises(SinkError, match="out.jsonl"):
        async with streamer.open(cfg, model=centerface):
            pass


def test_run_calls_a_plain_callback_with_every_result_in_order(centerface, clip):
    seen = []

    summary = streamer.run(config(file_source(clip, "a")), on_result=lambda r: seen.append(r.frame_index))

    assert seen == list(range(30))
    assert summary.frames == 30


async def test_stream_subscribe_delivers_results_by_topic_with_wildcards(centerface, astronaut, tmp_path):
    face = write_image_clip(tmp_path / "face.mp4", astronaut, frames=3)
    empty = write_clip(tmp_path / "empty.mp4", frames=4)
    by_pattern: dict[str, list[str]] = {"face/detections": [], "+/detections": [], "+/detections/face": []}

    async with streamer.open(config(file_source(face, "face"), file_source(empty, "empty")), model=centerface) as stream:
        for pattern, seen in by_pattern.items():
            stream.subscribe(pattern, lambda result, seen=seen: seen.append(result.source_id))
        await stream.wait()

    assert by_pattern["face/detections"] == ["face"] * 3
    assert sorted(by_pattern["+/detections"]) == ["empty"] * 4 + ["face"] * 3
    assert by_pattern["+/detections/face"] == ["face"] * 3  # only frames where a face was found


async def test_config_wires_jsonl_rotation_and_snapshots(centerface, astronaut, tmp_path):
    clip = write_image_clip(tmp_path / "a.mp4", astronaut, frames=4)
    cfg = config(
        file_source(clip, "cam"),
        sinks=[
            {"type": "jsonl", "path": str(tmp_path / "out" / "r.jsonl"), "rotate_bytes": 400},
            {"type": "snapshot", "folder": str(tmp_path / "snaps"), "classes": ["face"]},
        ],
    )

    await collect(cfg, centerface)

    files = sorted((tmp_path / "out").glob("r*.jsonl"))
    lines = [json.loads(line) for path in files for line in path.read_text().splitlines()]
    assert len(files) > 1 and sorted(line["frame_index"] for line in lines) == [0, 1, 2, 3]
    assert len(list((tmp_path / "snaps" / "cam").glob("*.jpg"))) == 4


@pytest.mark.parametrize(
    ("stage", "key"),
    [({"type": "classify", "model": "no-such-classifier"}, "model"),
     ({"type": "track", "appearance_model": "no-such-embedder"}, "appearance_model")],
)  # fmt: skip
async def test_resolve_models_when_a_stage_names_an_unknown_model_names_its_key(stage, key):
    config = load_config({"sources": [{"type": "lavfi", "graph": "testsrc2"}], "stages": [stage]})

    with pytest.raises(ConfigError) as caught:
        await resolve_models(config)

    assert caught.value.path == f"$.stages[0].{key}"
