"""The track stage: one id per object through a clip, ids never shared between sources, a fresh
tracker when a source reconnects or changes resolution, and `tracker_id` on what the sinks get."""

from __future__ import annotations

import pytest

from streamer.pipeline.tracking import TrackStage
from streamer.sinks import CallbackSink
from tests.media import write_moving_face_clip
from tests.pipeline.helpers import file_source, make_result, pipeline_config, read_jsonl, run_pipeline

FACE = (100.0, 100.0, 180.0, 200.0)


@pytest.fixture(scope="module")
def two_cameras(moving_clip, centerface, tmp_path_factory):
    """The moving-face clip as two sources of one stream, tracked: (JSONL rows, callback calls, summary)."""
    out = tmp_path_factory.mktemp("tracking") / "frames.jsonl"
    called = []
    callback = CallbackSink(lambda result: called.append((result.source_id, result.detections.tracker_id)))
    config = pipeline_config(
        file_source(moving_clip, "door"),
        file_source(moving_clip, "yard"),
        stages=[{"type": "track"}],
        sinks=[{"type": "jsonl", "path": str(out)}],
    )
    summary = run_pipeline(config, centerface, sinks=[callback])
    return read_jsonl(out), called, summary


def tracker_ids(rows, source):
    return [[detection["tracker_id"] for detection in row["detections"]] for row in rows if row["source"] == source]


def test_track_stage_when_a_face_moves_through_the_clip_keeps_one_id(two_cameras):
    rows, _, _ = two_cameras

    ids = tracker_ids(rows, "door")

    assert len(ids) == 60
    assert all(len(frame) == 1 for frame in ids)  # the face is found, and followed, in every frame
    assert len({frame[0] for frame in ids}) == 1


def test_track_stage_when_two_sources_show_the_same_clip_never_shares_an_id(two_cameras):
    rows, _, _ = two_cameras

    door = {i for frame in tracker_ids(rows, "door") for i in frame}
    yard = {i for frame in tracker_ids(rows, "yard") for i in frame}

    assert len(door) == 1 and len(yard) == 1
    assert door.isdisjoint(yard)


def test_track_stage_when_tracking_every_sink_gets_a_tracker_id_on_every_detection(two_cameras):
    rows, called, summary = two_cameras

    assert summary.detections == 120
    assert all(isinstance(d["tracker_id"], int) for row in rows for d in row["detections"])
    assert len(called) == 120
    assert all(ids is not None and len(ids) == 1 for _, ids in called)
    by_source = {
        source: {int(i) for called_source, ids in called if called_source == source for i in ids}
        for source in ("door", "yard")
    }
    assert by_source == {
        "door": {i for frame in tracker_ids(rows, "door") for i in frame},
        "yard": {i for frame in tracker_ids(rows, "yard") for i in frame},
    }


def moved(index):
    """FACE, a few pixels further right in each frame."""
    x1, y1, x2, y2 = FACE
    return (x1 + 3 * index, y1, x2 + 3 * index, y2)


async def track(stage, results):
    """The id of the one detection in each result, after the stage."""
    ids = []
    for result in results:
        tracked = await stage(result)
        (tracker_id,) = tracked.detections.tracker_id.tolist()
        ids.append(tracker_id)
    return ids


async def test_track_stage_when_nothing_changes_keeps_the_id():
    ids = await track(TrackStage(), [make_result(i, [moved(i)]) for i in range(6)])

    assert len(set(ids)) == 1


async def test_track_stage_when_the_session_changes_starts_new_ids():
    # A reconnect (or a looping file starting over) bumps Frame.session; the box does not jump.
    results = [make_result(i, [moved(i)], session=0 if i < 3 else 1) for i in range(6)]

    ids = await track(TrackStage(), results)

    assert len(set(ids[:3])) == 1 and len(set(ids[3:])) == 1
    assert ids[3] != ids[0]


async def test_track_stage_when_the_resolution_changes_starts_new_ids():
    results = [make_result(i, [moved(i)], size=(640, 360) if i < 3 else (320, 180)) for i in range(6)]

    ids = await track(TrackStage(), results)

    assert len(set(ids[:3])) == 1 and len(set(ids[3:])) == 1
    assert ids[3] != ids[0]


async def test_track_stage_when_sources_interleave_keeps_their_ids_apart():
    stage = TrackStage()
    # The same box in two sources, frame by frame: one tracker would match them to one track.
    results = [make_result(i // 2, [moved(i // 2)], source="ab"[i % 2]) for i in range(8)]

    ids = await track(stage, results)

    a, b = set(ids[0::2]), set(ids[1::2])
    assert len(a) == 1 and len(b) == 1 and a.isdisjoint(b)


async def test_track_stage_when_a_track_is_not_confirmed_yet_drops_its_detection():
    stage = TrackStage(min_frames=2)

    first = await stage(make_result(0, [moved(0)]))
    second = await stage(make_result(1, [moved(1)]))

    assert len(first.detections) == 0 and first.detections.tracker_id.tolist() == []
    assert len(second.detections) == 1 and second.detections.tracker_id is not None


async def test_track_stage_when_a_frame_is_empty_still_sets_an_empty_tracker_id():
    result = await TrackStage()(make_result(0))

    assert result.detections.tracker_id is not None and len(result.detections.tracker_id) == 0


def test_track_stage_when_a_looping_file_starts_over_gives_new_ids(centerface, astronaut, tmp_path):
    # Each time round is a new session (as a reconnect is); the face jumps back only 40 px, which
    # one tracker would still match to the old track.
    short = write_moving_face_clip(tmp_path / "short.mp4", astronaut, frames=6)
    out = tmp_path / "frames.jsonl"
    config = pipeline_config(
        file_source(short, "cam", loop=True, max_frames=18),
        stages=[{"type": "track"}],
        sinks=[{"type": "jsonl", "path": str(out)}],
    )

    run_pipeline(config, centerface)

    ids = [[d["tracker_id"] for d in row["detections"]] for row in read_jsonl(out)]
    assert [len(frame) for frame in ids] == [1] * 18
    loops = [{frame[0] for frame in ids[start : start + 6]} for start in (0, 6, 12)]
    assert all(len(ids_in_loop) == 1 for ids_in_loop in loops)
    assert len(set.union(*loops)) == 3
