"""The presence stage: class_appeared / class_disappeared, debounced by consecutive frames, per source."""

from __future__ import annotations

from streamer.pipeline.presence import PresenceStage
from tests.pipeline.helpers import make_result

FACE_BOX = (10, 10, 30, 30)


async def events_for(stage, timeline, *, source="cam", class_ids=None, confidence=0.9):
    """Feed one result per character of `timeline` ("x": a face in that frame, ".": none);
    return (frame index, kind, details) of each event."""
    fired = []
    for index, mark in enumerate(timeline):
        boxes = [FACE_BOX] if mark == "x" else []
        ids = class_ids if mark == "x" and class_ids is not None else None
        result = await stage(
            make_result(index, boxes, source=source, class_ids=ids, confidence=confidence, size=(64, 48))
        )
        fired += [(index, event.kind, event.details) for event in result.events]
    return fired


async def test_presence_stage_when_a_class_is_seen_appear_frames_in_a_row_fires_appeared_once():
    fired = await events_for(PresenceStage(appear_frames=3), "..xxxxxx")

    assert fired == [(4, "class_appeared", {"class_name": "face", "count": 1, "since_frame": 2})]


async def test_presence_stage_when_a_class_flickers_for_fewer_frames_fires_nothing():
    fired = await events_for(PresenceStage(appear_frames=3), "x.xx.x.xx.")

    assert fired == []


async def test_presence_stage_when_a_class_flickers_then_stays_counts_from_the_new_streak():
    fired = await events_for(PresenceStage(appear_frames=3), "x.xxx")

    assert [(index, kind, details["since_frame"]) for index, kind, details in fired] == [(4, "class_appeared", 2)]


async def test_presence_stage_when_a_class_is_missing_disappear_frames_in_a_row_fires_disappeared():
    fired = await events_for(PresenceStage(appear_frames=1, disappear_frames=3), "xxx...xx")

    assert fired == [
        (0, "class_appeared", {"class_name": "face", "count": 1, "since_frame": 0}),
        (5, "class_disappeared", {"class_name": "face", "count": 0, "since_frame": 3}),
        (6, "class_appeared", {"class_name": "face", "count": 1, "since_frame": 6}),
    ]


async def test_presence_stage_when_a_class_misses_fewer_frames_than_disappear_frames_stays_present():
    fired = await events_for(PresenceStage(appear_frames=1, disappear_frames=3), "xx..x..xx.")

    assert [kind for _, kind, _ in fired] == ["class_appeared"]


async def test_presence_stage_counts_the_objects_of_the_class_in_the_frame():
    stage = PresenceStage(appear_frames=1)
    result = make_result(0, [FACE_BOX, FACE_BOX, FACE_BOX], class_ids=[0, 0, 1], size=(64, 48))

    await stage(result)

    assert sorted((e.details["class_name"], e.details["count"]) for e in result.events) == [("face", 2), ("person", 1)]


async def test_presence_stage_when_classes_are_named_ignores_the_others():
    fired = await events_for(PresenceStage(classes=["face"], appear_frames=1), "xxx", class_ids=[1])  # persons only

    assert fired == []


async def test_presence_stage_ignores_detections_below_min_confidence():
    stage = PresenceStage(min_confidence=0.5, appear_frames=1)

    assert await events_for(stage, "xxx", confidence=0.4) == []
    assert [kind for _, kind, _ in await events_for(stage, "x", confidence=0.6)] == ["class_appeared"]


async def test_presence_stage_keeps_each_sources_streak_apart():
    stage = PresenceStage(appear_frames=2)
    fired = []
    # Frames alternate between two cameras; each sees the face in every other of its own frames.
    for index, (source, seen) in enumerate(
        [("a", True), ("b", False), ("a", True), ("b", True), ("a", False), ("b", False)]
    ):
        result = await stage(make_result(index, [FACE_BOX] if seen else [], source=source, size=(64, 48)))
        fired += [(result.source_id, event.kind) for event in result.events]

    assert fired == [("a", "class_appeared")]
