"""Events in a running pipeline: raised by built-in and user stages, routed by each sink's `kinds`,
published on `<source>/events/<kind>` topics, and delivered even when a later stage drops the frame."""

from __future__ import annotations

import pytest

from streamer.frames import Event
from streamer.sinks import CallbackSink
from tests.pipeline import user_stages
from tests.pipeline.helpers import file_source, pipeline_config, read_jsonl, run_pipeline, without_model

# A band the face's anchor is in from frame ~19 to ~38, and a line it crosses at ~35 (see test_zones).
ZONE = {"name": "bay", "polygon": [[242, 0], [402, 0], [402, 360], [242, 360]]}
LINE = {"name": "door", "start": [325, 0], "end": [325, 360]}
# In frame order; where two fall on one frame, in the order of the stages.
KINDS = ["face_count", "class_appeared", "zone_enter", "face_count", "line_cross", "zone_leave", "face_count"]


@pytest.fixture(scope="module")
def events_run(moving_clip, centerface, tmp_path_factory):
    """The moving-face clip through track, zones, presence and a user stage, with sinks of every kind."""
    out = tmp_path_factory.mktemp("events")
    taken = {"events callback": [], "frames callback": [], "+/events/#": [], "cam/events/zone_enter": []}

    def note(into):
        def append(item):  # what was delivered, without keeping the frames' pixels alive
            taken[into].append(
                (type(item).__name__, item.kind if isinstance(item, Event) else "frame", item.frame_index)
            )

        return append

    user_stages.remembered.clear()
    config = pipeline_config(
        file_source(moving_clip, "cam"),
        stages=[
            {"type": "track"},
            {"type": "zones", "zones": [ZONE], "lines": [LINE]},
            {"type": "presence", "appear_frames": 3},
            {"type": "custom", "function": "tests.pipeline.user_stages:face_count", "options": {"every": 20}},
        ],
        sinks=[
            {"type": "jsonl", "path": str(out / "events.jsonl"), "kinds": ["events"]},
            {"type": "jsonl", "path": str(out / "frames.jsonl")},
            {"type": "jsonl", "path": str(out / "both.jsonl"), "kinds": ["frames", "events"]},
            {"type": "callback", "function": "tests.pipeline.user_stages:remember", "kinds": ["events"]},
        ],
    )
    sinks = [CallbackSink(note("events callback"), kinds=["events"]), CallbackSink(note("frames callback"))]
    subscriptions = {pattern: note(pattern) for pattern in ("+/events/#", "cam/events/zone_enter")}
    summary = run_pipeline(config, centerface, sinks=sinks, subscriptions=subscriptions)
    files = {name: read_jsonl(out / f"{name}.jsonl") for name in ("events", "frames", "both")}
    return files, taken, list(user_stages.remembered), summary


def kinds_and_frames(rows):
    return [(row["event"], row["frame_index"]) for row in rows]


def test_events_reach_a_jsonl_sink_that_takes_events_in_frame_order(events_run):
    files, _, _, summary = events_run
    events = files["events"]

    assert [row["event"] for row in events] == KINDS
    assert [row["frame_index"] for row in events] == sorted(row["frame_index"] for row in events)
    assert all("detections" not in row for row in events)  # events only, no frame lines
    assert summary.events == len(KINDS)


def test_events_reach_callback_sinks_as_event_objects(events_run):
    files, taken, remembered, _ = events_run
    expected = [("Event", kind, index) for kind, index in kinds_and_frames(files["events"])]

    assert taken["events callback"] == expected
    assert remembered == expected  # the callback sink built from the config, with kinds = ["events"]


def test_events_never_reach_sinks_that_take_only_frames(events_run):
    files, taken, _, _ = events_run

    assert [row["frame_index"] for row in files["frames"]] == list(range(60))
    assert all("event" not in row for row in files["frames"])
    assert taken["frames callback"] == [("Result", "frame", index) for index in range(60)]


def test_events_when_a_sink_takes_frames_and_events_it_gets_both_each_event_after_its_frame(events_run):
    files, _, _, _ = events_run
    both = files["both"]
    frame_rows = [row for row in both if "event" not in row]
    event_rows = [row for row in both if "event" in row]

    assert frame_rows == files["frames"]
    assert [without_model(row) for row in event_rows] == [without_model(row) for row in files["events"]]
    for position, row in enumerate(both):
        if "event" in row:  # after its frame's line (and that frame's earlier events)
            before = next(r for r in reversed(both[:position]) if "event" not in r)
            assert before["frame_index"] == row["frame_index"]


def test_events_are_published_on_source_events_kind_topics(events_run):
    files, taken, _, _ = events_run
    expected = [("Event", kind, index) for kind, index in kinds_and_frames(files["events"])]

    assert taken["+/events/#"] == expected
    assert taken["cam/events/zone_enter"] == [item for item in expected if item[1] == "zone_enter"]


def test_events_from_a_user_stage_chained_after_built_in_stages_carry_its_details(events_run):
    files, _, _, _ = events_run
    (face_id,) = {d["tracker_id"] for row in files["frames"] for d in row["detections"]}

    counts = [row for row in files["events"] if row["event"] == "face_count"]

    assert [row["frame_index"] for row in counts] == [0, 20, 40]
    assert all(row["faces"] == 1 and row["tracker_ids"] == [face_id] for row in counts)  # the track stage ran first
    assert all(row["source"] == "cam" and row["model"]["id"] == "centerface" for row in counts)


def test_events_from_built_in_stages_name_their_stage_details(events_run):
    files, _, _, _ = events_run
    by_kind = {row["event"]: without_model(row) for row in files["events"]}

    appeared = by_kind["class_appeared"]
    assert (appeared["frame_index"], appeared["class_name"], appeared["count"], appeared["since_frame"]) == (
        2,
        "face",
        1,
        0,
    )
    assert by_kind["zone_enter"]["zone"] == "bay" and by_kind["line_cross"]["line"] == "door"


def test_events_when_a_later_stage_drops_the_frame_still_reach_the_sinks(centerface, clip, tmp_path):
    config = pipeline_config(
        file_source(clip, "cam"),
        stages=[{"type": "custom", "function": "tests.pipeline.user_stages:announce_and_drop_odd"}],
        sinks=[
            {"type": "jsonl", "path": str(tmp_path / "events.jsonl"), "kinds": ["events"]},
            {"type": "jsonl", "path": str(tmp_path / "frames.jsonl")},
        ],
    )

    summary = run_pipeline(config, centerface)

    assert [row["frame_index"] for row in read_jsonl(tmp_path / "frames.jsonl")] == list(range(0, 30, 2))
    events = read_jsonl(tmp_path / "events.jsonl")
    assert [(row["event"], row["frame_index"], row["reason"]) for row in events] == [
        ("dropped", index, "odd frame") for index in range(1, 30, 2)
    ]
    assert summary.events == 15


def test_events_emitted_after_a_stage_returned_a_new_result_reach_the_sinks(centerface, clip, tmp_path):
    config = pipeline_config(
        file_source(clip, "cam"),
        stages=[
            {"type": "custom", "function": "tests.pipeline.user_stages:fresh_copy"},
            {"type": "custom", "function": "tests.pipeline.user_stages:mark_every_frame"},
        ],
        sinks=[{"type": "jsonl", "path": str(tmp_path / "events.jsonl"), "kinds": ["events"]}],
    )

    run_pipeline(config, centerface)

    assert len(read_jsonl(tmp_path / "events.jsonl")) == 30  # seen: 0
