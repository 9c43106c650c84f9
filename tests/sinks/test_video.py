"""The video sink's annotation: track ids in the labels, zones, lines, masks and skeletons drawn, or nothing."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from streamer.frames import Detections, Shape
from streamer.sinks.video import Annotator, _labels, _plain
from tests.pipeline.helpers import make_result

BAND = Shape("bay", np.array([[40, 10], [120, 10], [120, 90], [40, 90]]), closed=True)
DOOR = Shape("door", np.array([[160, 0], [160, 100]]), closed=False)


def grey_result(**options):
    result = make_result(0, size=(200, 100), **options)
    result.frame.image = np.full((100, 200, 3), 128, np.uint8)
    return result


def test_labels_when_tracked_start_with_the_track_id():
    result = make_result(0, [(1, 1, 5, 5), (6, 6, 9, 9)], class_ids=[0, 1], tracker_ids=[4, 17])

    assert _labels(result) == ["#4 face 0.90", "#17 person 0.90"]


def test_labels_when_not_tracked_are_class_and_confidence():
    result = make_result(0, [(1, 1, 5, 5)])

    assert _labels(result) == ["face 0.90"]


def changed(annotated, plain):
    return np.any(annotated != plain, axis=-1)


def test_annotator_draws_zones_and_lines_along_their_edges():
    result = grey_result()
    result.shapes += [BAND, DOOR]
    plain = result.frame.image.copy()

    drawn = changed(Annotator()(result), plain)

    assert drawn[50:90, 38:43].any(axis=1).all()  # every row along the zone's left edge (x = 40), below its name
    assert drawn[20:90, 118:123].any(axis=1).all()  # its right edge
    assert drawn[20:90, 158:163].any(axis=1).all()  # the line (x = 160)
    assert drawn[9:12, 75:118].any(axis=0).all()  # the zone's top edge (y = 10), right of its name
    assert not drawn[45:85, 75:115].any()  # inside the zone, below its name: untouched
    assert not drawn[40:, 165:].any()  # right of the line, below its name: untouched
    assert np.array_equal(result.frame.image, plain)  # drawn on a copy


def test_annotator_without_shapes_or_detections_leaves_the_picture_as_it_is():
    result = grey_result()

    assert np.array_equal(Annotator()(result), result.frame.image)


def test_plain_annotation_returns_the_frame_itself():
    result = grey_result()
    result.shapes.append(BAND)

    assert _plain(result) is result.frame.image


def pose_result(skeleton=((0, 1),)):
    """One box (20, 20)-(180, 90) with a mask over columns 100-140, rows 40-70, and three keypoints,
    the third scored too low to be drawn."""
    result = grey_result()
    masks = np.zeros((1, 100, 200), bool)
    masks[0, 40:70, 100:140] = True
    result.detections = Detections(
        xyxy=np.array([[20, 20, 180, 90]], np.float32),
        confidence=np.array([0.9], np.float32),
        class_id=np.array([0]),
        mask=masks,
        keypoints=np.array([[[40, 40], [90, 80], [160, 50]]], np.float32),
        keypoint_confidence=np.array([[0.9, 0.8, 0.1]], np.float32),
    )
    result.model = replace(result.model, keypoint_names=("a", "b", "c"), skeleton=skeleton)
    return result


def test_annotator_when_boxes_have_masks_blends_only_the_masks_pixels():
    result = pose_result()
    plain = result.frame.image.copy()

    drawn = changed(Annotator()(result), plain)

    assert drawn[42:68, 102:138].all()  # the mask
    assert not drawn[42:68, 142:170].any() and not drawn[25:35, 100:140].any()  # the box, outside the mask
    assert np.array_equal(result.frame.image, plain)


def test_annotator_when_the_model_has_a_skeleton_joins_the_shown_keypoints():
    plain = pose_result().frame.image.copy()

    with_edges = changed(Annotator()(pose_result()), plain)
    without = changed(Annotator()(pose_result(skeleton=())), plain)

    assert with_edges[58:63, 62:69].any() and not without[58:63, 62:69].any()  # half way from a to b
    assert with_edges[39:42, 39:42].all() and without[79:82, 89:92].all()  # the keypoints themselves
    assert not with_edges[48:53, 158:163].any()  # c, scored 0.1, is left out
