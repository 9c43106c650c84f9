"""Snapshot sink: JPEGs of the frames where a class of interest appears, rate-limited per source."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

import streamer
from streamer.sinks.snapshot import SnapshotSink
from tests.media import write_image_clip
from tests.sinks.test_topics import make_result

NAME = re.compile(r"cam_(\d+)_\d{8}T\d{6}\.\d{3}\.jpg")


@pytest.fixture
def face_clip(tmp_path, astronaut):
    """10 frames of the astronaut at 25 fps (pts 0.00, 0.04 ... 0.36): a face in every one."""
    return write_image_clip(tmp_path / "astronaut.mp4", astronaut, frames=10, fps=25)


async def run_with(model, clip, sink):
    cfg = {"sources": [{"type": "file", "id": "cam", "path": str(clip)}]}
    async with streamer.open(cfg, model=model, sinks=[sink]) as stream:
        await stream.wait()
    return sorted((sink.folder / "cam").glob("*"), key=lambda path: int(NAME.fullmatch(path.name)[1]))


async def test_a_snapshot_of_every_frame_where_a_face_appears(centerface, face_clip, astronaut, tmp_path):
    sink = SnapshotSink(folder=str(tmp_path / "shots"), classes=["face"])

    shots = await run_with(centerface, face_clip, sink)

    assert [int(NAME.fullmatch(path.name)[1]) for path in shots] == list(range(10)) and sink.written == 10
    with Image.open(shots[0]) as image:
        assert image.format == "JPEG" and image.size == (astronaut.shape[1], astronaut.shape[0])
        pixels = np.asarray(image.convert("RGB")).astype(int)
    face = centerface(astronaut).xyxy[0].round().astype(int)
    top_edge = pixels[face[1] - 1 : face[1] + 2, face[0] : face[2]]
    original = astronaut[face[1] - 1 : face[1] + 2, face[0] : face[2]].astype(int)
    assert np.abs(top_edge - original).mean() > 40  # the box is drawn


async def test_no_snapshot_when_no_detection_is_of_the_classes_named(centerface, face_clip, tmp_path):
    sink = SnapshotSink(folder=str(tmp_path / "shots"), classes=["cat"])

    assert await run_with(centerface, face_clip, sink) == [] and sink.written == 0


async def test_min_interval_s_limits_snapshots_per_source_on_the_video_timeline(centerface, face_clip, tmp_path):
    sink = SnapshotSink(folder=str(tmp_path / "shots"), min_interval_s=0.15, annotate=False)

    shots = await run_with(centerface, face_clip, sink)

    assert [int(NAME.fullmatch(path.name)[1]) for path in shots] == [0, 4, 8]  # pts 0.00, 0.16, 0.32


def scored(source, index, confidence):
    result = make_result(source, (0,), index=index)
    result.detections.confidence[:] = confidence
    return result


async def test_min_confidence_and_an_interval_of_its_own_for_each_source(tmp_path):
    sink = SnapshotSink(folder=str(tmp_path / "shots"), min_interval_s=10.0, min_confidence=0.95, annotate=False)

    async with sink:
        assert not sink.wants(scored("a", 0, 0.5)) and sink.wants(scored("a", 0, 0.97))
        for result in [scored("a", 0, 0.5), scored("a", 1, 0.97), scored("a", 2, 0.97), scored("../b", 0, 0.97)]:
            await sink.write(result)

    shots = sorted(path.relative_to(tmp_path / "shots").parts for path in (tmp_path / "shots").rglob("*.jpg"))
    assert sink.written == 2 and [(folder, name[:6]) for folder, name in shots] == [("_._b", "_._b_0"), ("a", "a_1_20")]


async def test_an_unwritable_folder_fails_at_open(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")

    with pytest.raises(streamer.SinkError, match="not-a-folder"):
        async with SnapshotSink(folder=str(blocker / "shots")):
            pass
