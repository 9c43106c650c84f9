"""Where the track stage's ByteTrack comes from: supervision's own up to 0.30, Roboflow's `trackers`
(streamer[tracking]) once it is installed, as supervision 0.31 has none. Whichever it is, the stage
behaves the same: ids on the first frame, `min_frames` and `lost_frames` counted in frames, ids
never shared between sources. Run these next to both (docs/tracking.md says how)."""

from __future__ import annotations

import importlib.util

import pytest

from streamer.errors import MissingDependencyError
from streamer.interop import import_supervision
from streamer.pipeline.tracking import TrackersByteTrack, TrackStage, new_bytetrack
from tests.pipeline.helpers import make_result

HAS_TRACKERS = importlib.util.find_spec("trackers") is not None
SUPERVISION_HAS_BYTETRACK = hasattr(import_supervision(), "ByteTrack")
needs_trackers = pytest.mark.skipif(
    not HAS_TRACKERS, reason="`trackers` is not installed: pip install 'streamer[tracking]'"
)
needs_a_bytetrack = pytest.mark.skipif(
    not (HAS_TRACKERS or SUPERVISION_HAS_BYTETRACK),
    reason="supervision>=0.31 has no ByteTrack: pip install 'streamer[tracking]'",
)


def box(index, left=100.0, top=100.0):
    """An 80 x 100 box a few pixels further right in each frame."""
    return (left + 3 * index, top, left + 80 + 3 * index, top + 100)


async def tracked(stage, results):
    """The tracker ids of each result, after the stage."""
    return [(await stage(result)).detections.tracker_id.tolist() for result in results]


async def hidden_for(frames, lost_frames):
    """The ids of one box before and after it is hidden (no detection) for `frames` frames."""
    stage = TrackStage(lost_frames=lost_frames)
    shown = [make_result(i, [box(i)] if not 5 <= i < 5 + frames else []) for i in range(10 + frames)]
    ids = await tracked(stage, shown)
    return ids[4][0], ids[-1][0]  # a new track is followed from its second frame


@needs_trackers
def test_track_stage_when_trackers_is_installed_takes_its_bytetrack():
    tracker = new_bytetrack(TrackStage().settings)

    assert isinstance(tracker, TrackersByteTrack)


@needs_a_bytetrack
async def test_track_stage_when_two_objects_move_in_two_sources_gives_four_ids_from_the_first_frame():
    results = [
        make_result(i // 2, [box(i // 2), box(i // 2, left=400.0)], source="ab"[i % 2]) for i in range(40)
    ]

    ids = await tracked(TrackStage(), results)

    assert all(len(frame) == 2 for frame in ids)  # both followed from the very first frame
    a = {tuple(sorted(frame)) for frame in ids[0::2]}
    b = {tuple(sorted(frame)) for frame in ids[1::2]}
    assert len(a) == 1 and len(b) == 1 and set(*a).isdisjoint(*b)


@needs_a_bytetrack
async def test_track_stage_when_min_frames_is_three_gives_an_id_on_the_third_frame():
    ids = await tracked(TrackStage(min_frames=3), [make_result(i, [box(i)]) for i in range(6)])

    assert [len(frame) for frame in ids] == [0, 0, 1, 1, 1, 1]
    assert len({frame[0] for frame in ids[2:]}) == 1


@needs_a_bytetrack
async def test_track_stage_when_an_object_is_hidden_for_one_more_than_lost_frames_keeps_its_id():
    before, after = await hidden_for(frames=5, lost_frames=4)  # supervision's count: retired after 5 unseen

    assert before == after


@needs_a_bytetrack
async def test_track_stage_when_an_object_is_hidden_two_more_than_lost_frames_gives_it_a_new_id():
    before, after = await hidden_for(frames=6, lost_frames=4)

    assert before != after


@needs_a_bytetrack
async def test_track_stage_when_confidence_is_between_activation_and_low_keeps_but_never_starts_a_track():
    # Below the activation threshold a detection only continues a track (ByteTrack's second stage).
    confidences = [0.9, 0.9, 0.2, 0.2, 0.2]
    ids = await tracked(TrackStage(), [make_result(i, [box(i)], confidence=c) for i, c in enumerate(confidences)])
    fresh = await tracked(TrackStage(), [make_result(i, [box(i)], confidence=0.2) for i in range(5)])

    assert len({frame[0] for frame in ids}) == 1 and all(len(frame) == 1 for frame in ids)
    assert fresh == [[]] * 5


@pytest.mark.skipif(
    HAS_TRACKERS or SUPERVISION_HAS_BYTETRACK, reason="a ByteTrack is installed (supervision<0.31 or trackers)"
)
async def test_track_stage_when_no_bytetrack_is_installed_names_the_extra():
    with pytest.raises(MissingDependencyError, match=r"streamer\[tracking\]"):
        await TrackStage()(make_result(0, [box(0)]))
