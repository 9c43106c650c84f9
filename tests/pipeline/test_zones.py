"""The zones stage: enter, leave and cross events at the frames the face's known path predicts,
counts in every frame, relative coordinates, geometry per camera, and tracks that vanish."""

from __future__ import annotations

import av
import numpy as np
import pytest

import streamer
from streamer.config import schema
from streamer.errors import StageError
from streamer.masks import CropMasks
from streamer.pipeline.zones import ZonesStage
from tests.media import MOVING_SIZE, moving_face_frame
from tests.pipeline.helpers import (
    expected_face,
    file_source,
    first_frame,
    make_result,
    pipeline_config,
    read_jsonl,
    run_pipeline,
)

WIDTH, HEIGHT = MOVING_SIZE
ZONE_LEFT, ZONE_RIGHT = 242, 402  # a full-height band in the middle of the frame
LINE_X = 325  # a vertical line, drawn top to bottom
ZONE = {"name": "bay", "polygon": [[ZONE_LEFT, 0], [ZONE_RIGHT, 0], [ZONE_RIGHT, HEIGHT], [ZONE_LEFT, HEIGHT]]}
LINE = {"name": "door", "start": [LINE_X, 0], "end": [LINE_X, HEIGHT]}


def fractions(points):
    """Pixel coordinates as a person would write them relative to the frame (6 decimals)."""
    return [[round(x / WIDTH, 6), round(y / HEIGHT, 6)] for x, y in points]


RELATIVE_ZONE = {"name": "bay", "polygon": fractions(ZONE["polygon"])}
RELATIVE_LINE = {"name": "door", "start": fractions([LINE["start"]])[0], "end": fractions([LINE["end"]])[0]}


def anchor_x(box):
    """The zone's default anchor, bottom_center: the middle of the box's bottom edge."""
    return (box[0] + box[2]) / 2


# From the clip's geometry alone (tests.media.face_box and the face's place in the crop):
ENTER = first_frame(lambda box: anchor_x(box) >= ZONE_LEFT)  # the anchor comes into the band
LEAVE = first_frame(lambda box: anchor_x(box) > ZONE_RIGHT)  # ... and goes out of its right side
CROSS = first_frame(lambda box: box[0] > LINE_X)  # all four corners are right of the line
# Each edge lies about midway (~4 px from either) between two consecutive frames' positions of the
# box CenterFace finds, which sits 2-4 px left of the hand-measured face. The prediction uses the
# hand-measured face, 1-2 px from some edges, and the detector's box wobbles by a pixel or two from
# frame to frame (H.264, letterboxing): an event may come one frame earlier or later than
# predicted, so allow +-1 frame.
SLACK = 1


@pytest.fixture(scope="module")
def zones_run(moving_clip, centerface, tmp_path_factory):
    """The clip as two cameras: "pixels" with pixel geometry, "fractions" with the same geometry
    relative to the frame; each zones stage is limited to its own camera."""
    out = tmp_path_factory.mktemp("zones")
    config = pipeline_config(
        file_source(moving_clip, "pixels"),
        file_source(moving_clip, "fractions"),
        stages=[
            {"type": "track"},
            {"type": "zones", "zones": [ZONE], "lines": [LINE], "sources": ["pixels"]},
            {
                "type": "zones",
                "zones": [RELATIVE_ZONE],
                "lines": [RELATIVE_LINE],
                "relative": True,
                "sources": ["fractions"],
            },
        ],
        sinks=[
            {"type": "jsonl", "path": str(out / "events.jsonl"), "kinds": ["events"]},
            {"type": "jsonl", "path": str(out / "frames.jsonl")},
            {"type": "video", "path": str(out / "annotated.mp4"), "sources": ["pixels"]},
        ],
    )
    summary = run_pipeline(config, centerface)
    return read_jsonl(out / "events.jsonl"), read_jsonl(out / "frames.jsonl"), summary, out / "annotated.mp4"


def of(rows, source):
    return [row for row in rows if row["source"] == source]


def the_face_id(frames, source):
    (tracker_id,) = {d["tracker_id"] for row in of(frames, source) for d in row["detections"]}
    return tracker_id


def test_expected_frames_follow_from_the_clip_geometry():
    # Sanity of the prediction itself: enter, cross, leave, in that order, well inside the clip.
    assert 0 < ENTER < CROSS < LEAVE < 59
    assert anchor_x(expected_face(ENTER - 1)) < ZONE_LEFT <= anchor_x(expected_face(ENTER))


def test_zones_stage_when_a_face_crosses_the_band_fires_enter_cross_leave_once_each(zones_run):
    events, frames, _, _ = zones_run

    fired = [(event["event"], event["frame_index"]) for event in of(events, "pixels")]

    assert [kind for kind, _ in fired] == ["zone_enter", "line_cross", "zone_leave"]
    at = dict(fired)
    assert abs(at["zone_enter"] - ENTER) <= SLACK
    assert abs(at["line_cross"] - CROSS) <= SLACK
    assert abs(at["zone_leave"] - LEAVE) <= SLACK


def test_zones_stage_events_carry_track_class_source_pts_and_wall_time(zones_run):
    events, frames, _, _ = zones_run
    frame_rows = {row["frame_index"]: row for row in of(frames, "pixels")}
    enter, cross, leave = of(events, "pixels")
    face = the_face_id(frames, "pixels")

    for event in (enter, cross, leave):
        row = frame_rows[event["frame_index"]]
        assert event["source"] == "pixels" and event["class_name"] == "face" and event["tracker_id"] == face
        assert event["pts"] == row["pts"] == pytest.approx(event["frame_index"] / 15)
        assert event["wall_time"] == row["wall_time"] and event["wall_time"] > 1.7e9
        assert event["model"]["id"] == "centerface"
    assert enter["zone"] == "bay" and enter["counts"] == {"face": 1}
    assert leave["zone"] == "bay" and leave["counts"] == {} and leave["reason"] == "exited"
    assert cross["line"] == "door" and cross["direction"] == "in"
    assert cross["counts"] == {"in": {"face": 1}, "out": {}}


def test_zones_stage_writes_counts_per_zone_and_class_in_every_frame_row(zones_run):
    events, frames, _, _ = zones_run
    at = {event["event"]: event["frame_index"] for event in of(events, "pixels")}

    for row in of(frames, "pixels"):
        index, zone, line = row["frame_index"], row["zones"]["bay"], row["lines"]["door"]
        inside = at["zone_enter"] <= index < at["zone_leave"]
        assert zone["inside"] == ({"face": 1} if inside else {}), index
        assert zone["entered"] == ({"face": 1} if index >= at["zone_enter"] else {}), index
        assert zone["left"] == ({"face": 1} if index >= at["zone_leave"] else {}), index
        assert line == {"in": {"face": 1} if index >= at["line_cross"] else {}, "out": {}}, index


def test_zones_stage_when_relative_fires_the_same_events_as_pixel_coordinates(zones_run):
    events, frames, _, _ = zones_run

    def comparable(event):
        return {key: value for key, value in event.items() if key not in ("source", "tracker_id", "wall_time")}

    assert [comparable(e) for e in of(events, "fractions")] == [comparable(e) for e in of(events, "pixels")]
    assert [row["zones"] for row in of(frames, "fractions")] == [row["zones"] for row in of(frames, "pixels")]
    assert [row["lines"] for row in of(frames, "fractions")] == [row["lines"] for row in of(frames, "pixels")]


def test_zones_stage_when_sources_are_listed_leaves_other_cameras_alone(zones_run):
    events, _, summary, _ = zones_run

    # Each camera has one zones stage of its own; had either applied to both, events would double.
    assert len(of(events, "pixels")) == 3 and len(of(events, "fractions")) == 3
    assert summary.events == 6


def test_video_sink_when_zones_are_set_draws_them_on_every_frame(zones_run, astronaut):
    *_, video = zones_run
    with av.open(str(video)) as container:
        pictures = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]

    below_the_face = slice(290, 350)  # grey in the original, whatever the frame
    for index, picture in enumerate(pictures):
        difference = np.abs(picture.astype(np.int64) - moving_face_frame(astronaut, index)).max(axis=-1)[below_the_face]
        for x in (ZONE_LEFT, ZONE_RIGHT, LINE_X):
            assert (difference[:, x - 2 : x + 3] > 40).any(axis=1).all(), (index, x)
        assert difference[:, 450:600].mean() < 2, index  # away from every shape: as it was
    assert len(pictures) == 60


async def test_zones_stage_when_a_source_is_not_listed_passes_its_results_untouched():
    stage = ZonesStage(zones=[schema.ZoneConfig(name="bay", polygon=[(0, 0), (10, 0), (10, 10)])], sources=["door"])
    result = make_result(0, [(1, 1, 5, 5)], source="yard")  # no tracker ids either: nothing to check

    passed = await stage(result)

    assert passed is result and passed.events == [] and passed.extra == {} and passed.shapes == []


async def test_zones_stage_when_relative_scales_the_geometry_to_each_sources_resolution():
    stage = ZonesStage(
        zones=[schema.ZoneConfig(name="bay", polygon=[(0.25, 0.0), (0.75, 0.0), (0.75, 1.0), (0.25, 1.0)])],
        lines=[schema.LineConfig(name="door", start=(0.5, 0.0), end=(0.5, 1.0))],
        relative=True,
    )

    big = await stage(make_result(0, tracker_ids=[], size=(640, 360), source="big"))
    small = await stage(make_result(0, tracker_ids=[], size=(320, 180), source="small"))

    shapes = {result.source_id: {s.name: s.points.tolist() for s in result.shapes} for result in (big, small)}
    assert shapes["big"] == {"bay": [[160, 0], [480, 0], [480, 360], [160, 360]], "door": [[320, 0], [320, 360]]}
    assert shapes["small"] == {"bay": [[80, 0], [240, 0], [240, 180], [80, 180]], "door": [[160, 0], [160, 180]]}
    assert [s.closed for s in big.shapes] == [True, False]


async def test_zones_stage_without_a_track_stage_before_it_raises_a_clear_stage_error(centerface, clip):
    config = pipeline_config(file_source(clip, "cam"), stages=[{"type": "zones", "zones": [ZONE]}])

    with pytest.raises(StageError, match=r"needs tracker ids: put a `track` stage before it"):
        async with streamer.open(config, model=centerface) as stream:
            await stream.wait()


async def test_zones_stage_when_a_track_vanishes_inside_a_zone_it_leaves_after_forget_after_frames():
    stage = ZonesStage(
        zones=[schema.ZoneConfig(name="bay", polygon=[(0, 0), (100, 0), (100, 100), (0, 100)])], forget_after_frames=3
    )
    inside = (40, 40, 60, 60)
    results = [make_result(i, [inside], tracker_ids=[7], size=(200, 100)) for i in range(5)]
    results += [make_result(i, [], tracker_ids=[], size=(200, 100)) for i in range(5, 10)]  # the track is gone

    for result in results:
        await stage(result)

    fired = [(r.frame_index, e.kind, e.details.get("reason")) for r in results for e in r.events]
    assert fired == [(0, "zone_enter", None), (4 + 3, "zone_leave", "lost")]
    leave = results[7].events[0]
    assert leave.details["tracker_id"] == 7 and leave.details["class_name"] == "face" and leave.details["counts"] == {}
    assert [r.extra["zones"]["bay"]["inside"] for r in results[5:8]] == [{"face": 1}, {"face": 1}, {}]


async def test_zones_stage_when_a_track_leaves_and_comes_back_enters_again():
    stage = ZonesStage(zones=[schema.ZoneConfig(name="bay", polygon=[(0, 0), (100, 0), (100, 100), (0, 100)])])
    path = [(40, 40, 60, 60), (140, 40, 160, 60), (40, 40, 60, 60)]  # in, out (right of the zone), in
    results = [make_result(i, [box], tracker_ids=[3], size=(200, 100)) for i, box in enumerate(path)]

    for result in results:
        await stage(result)

    assert [[e.kind for e in r.events] for r in results] == [["zone_enter"], ["zone_leave"], ["zone_enter"]]
    assert results[-1].extra["zones"]["bay"] == {"inside": {"face": 1}, "entered": {"face": 2}, "left": {"face": 1}}


async def test_zones_stage_line_cross_direction_is_in_one_way_and_out_the_other():
    # A line drawn top to bottom: crossing it left to right is "in", right to left "out".
    stage = ZonesStage(lines=[schema.LineConfig(name="door", start=(100, 0), end=(100, 100))])
    path = [(40, 40, 60, 60), (140, 40, 160, 60), (40, 40, 60, 60)]
    results = [make_result(i, [box], tracker_ids=[3], size=(200, 100)) for i, box in enumerate(path)]

    for result in results:
        await stage(result)

    crossings = [(e.kind, e.details["direction"]) for r in results for e in r.events]
    assert crossings == [("line_cross", "in"), ("line_cross", "out")]
    assert results[-1].extra["lines"]["door"] == {"in": {"face": 1}, "out": {"face": 1}}


async def test_zones_stage_when_a_zone_names_classes_ignores_the_others():
    stage = ZonesStage(
        zones=[schema.ZoneConfig(name="bay", polygon=[(0, 0), (100, 0), (100, 100), (0, 100)], classes=["person"])]
    )
    boxes = [(10, 10, 30, 30), (50, 50, 70, 70)]
    result = make_result(0, boxes, class_ids=[0, 1], tracker_ids=[1, 2], size=(200, 100))  # a face, a person

    await stage(result)

    assert [(e.kind, e.details["tracker_id"], e.details["class_name"]) for e in result.events] == [
        ("zone_enter", 2, "person")
    ]
    assert result.extra["zones"]["bay"]["inside"] == {"person": 1}


async def test_zones_stage_when_the_source_reconnects_tracks_inside_a_zone_leave_it():
    stage = ZonesStage(zones=[schema.ZoneConfig(name="bay", polygon=[(0, 0), (100, 0), (100, 100), (0, 100)])])
    before = [make_result(i, [(40, 40, 60, 60)], tracker_ids=[7], size=(200, 100)) for i in range(2)]
    after = [make_result(i, [], tracker_ids=[], size=(200, 100), session=1) for i in range(2, 40)]

    for result in before + after:
        await stage(result)

    leaves = [(e.kind, e.details["tracker_id"]) for r in after for e in r.events]
    assert leaves == [("zone_leave", 7)]  # seen: [] (and the zone's counts start again at zero)


def _with_masks(result, spans):
    """Give each box a mask filling columns [x0, x1) of its box (or no pixel, for None)."""
    bounds = CropMasks.box_bounds(result.detections.xyxy, (result.frame.width, result.frame.height))
    bitmaps = []
    for (bx0, by0, bx1, by1), span in zip(bounds.tolist(), spans):
        bitmap = np.zeros((by1 - by0, bx1 - bx0), bool)
        if span is not None:
            bitmap[:, span[0] - bx0 : span[1] - bx0] = True
        bitmaps.append(bitmap)
    result.detections.mask = CropMasks(bounds, bitmaps, (result.frame.width, result.frame.height))
    return result


BAY = [(0, 0), (100, 0), (100, 100), (0, 100)]
STRADDLING = (80, 40, 160, 60)  # the box's centre (120) is outside the bay, its left part inside


@pytest.mark.parametrize(
    "anchor, spans, entered",
    [
        ("center_of_mass", [(80, 95)], True),  # the mask lies in the bay's part of the box
        ("center_of_mass", [(110, 160)], False),
        ("center_of_mass", [None], False),  # a mask with no pixel: the box centre decides
        ("center", [(80, 95)], False),
    ],
    ids=["mass-inside", "mass-outside", "empty-mask", "box-centre"],
)
async def test_zones_stage_when_anchored_at_the_centre_of_mass_uses_the_masks_centroid(anchor, spans, entered):
    stage = ZonesStage(zones=[schema.ZoneConfig(name="bay", polygon=BAY, anchor=anchor)])
    result = _with_masks(make_result(0, [STRADDLING], tracker_ids=[5], size=(200, 100)), spans)

    await stage(result)

    assert [e.kind for e in result.events] == (["zone_enter"] if entered else [])


async def test_zones_stage_when_anchored_at_the_centre_of_mass_without_masks_uses_the_box_centre():
    stage = ZonesStage(zones=[schema.ZoneConfig(name="bay", polygon=BAY, anchor="center_of_mass")])
    boxes = [(40, 40, 60, 60), STRADDLING]
    results = [make_result(i, [box], tracker_ids=[5], size=(200, 100)) for i, box in enumerate(boxes)]

    for result in results:
        await stage(result)

    assert [[e.kind for e in r.events] for r in results] == [["zone_enter"], ["zone_leave"]]


async def test_zones_stage_when_a_line_is_anchored_at_the_centre_of_mass_crosses_with_the_mask():
    door = schema.LineConfig(name="door", start=(100, 0), end=(100, 100), anchors=["center_of_mass"])
    stage = ZonesStage(lines=[door])
    # The box never moves; its mask goes from the left of the line to the right of it.
    results = [
        _with_masks(make_result(i, [(60, 40, 140, 60)], tracker_ids=[3], size=(200, 100)), [span])
        for i, span in enumerate([(60, 80), (120, 140)])
    ]

    for result in results:
        await stage(result)

    assert [(e.kind, e.details["direction"]) for r in results for e in r.events] == [("line_cross", "in")]
