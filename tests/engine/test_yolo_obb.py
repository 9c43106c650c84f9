"""Ultralytics oriented boxes: corners and angle in source pixels, rotated NMS by ProbIoU."""

from __future__ import annotations

import numpy as np
import pytest

from streamer.engine import AutoModel
from streamer.engine.models.yolo_obb import UltralyticsObb, corners_of, regularized
from streamer.engine.postprocess import rotated_suppresses
from streamer.engine.preprocess import Placement
from streamer.frames import Frame
from tests.engine.ultralytics_exports import exported


def test_corners_of_when_the_box_is_not_turned_are_its_corners_in_ultralytics_order():
    corners = corners_of(np.array([[100, 50, 40, 20, 0.0]], np.float32))

    np.testing.assert_allclose(corners[0], [[120, 60], [120, 40], [80, 40], [80, 60]])


def test_regularized_when_turned_by_a_quarter_swaps_width_and_height_and_gives_the_same_corners():
    turned = np.array([[100, 50, 40, 20, np.pi / 2 + 0.1]], np.float32)

    upright = regularized(turned)

    np.testing.assert_allclose(upright[0], [100, 50, 20, 40, 0.1], atol=1e-6)
    same = {tuple(np.round(c, 3)) for c in corners_of(upright)[0]} == {tuple(np.round(c, 3)) for c in corners_of(turned)[0]}
    assert same


def test_rotated_suppresses_when_boxes_coincide_or_are_far_apart_or_turned_a_quarter():
    boxes = np.array([[
        [50, 50, 40, 10, 0.3],
        [50, 50, 40, 10, 0.3],  # the same box: ProbIoU 1
        [50, 50, 10, 40, 0.3 + np.pi / 2],  # the same box described turned a quarter, w and h swapped
        [50, 50, 40, 10, 0.3 + np.pi / 2],  # a cross over the first: little overlap
        [500, 50, 40, 10, 0.3],  # far away
    ]], np.float64)

    suppresses = rotated_suppresses(boxes, 0.5)[0]

    assert suppresses[0].tolist() == [False, True, True, False, False]
    assert not suppresses[:, 0].any()  # nothing ahead of the first


def _decoder() -> UltralyticsObb:
    decoder = UltralyticsObb.__new__(UltralyticsObb)
    decoder.confidence, decoder.iou = 0.25, 0.45
    return decoder


def test_yolo_obb_decode_when_given_crafted_rows_keeps_rotated_boxes_by_class_and_undoes_the_letterbox():
    rows = np.zeros((1, 4 + 2 + 1, 4), np.float32)  # cx, cy, w, h, 2 class scores, angle
    rows[0, :, 0] = [100, 60, 40, 10, 0.9, 0.0, np.pi / 4]
    rows[0, :, 1] = [101, 60, 40, 10, 0.8, 0.0, np.pi / 4]  # the same box: suppressed
    rows[0, :, 2] = [100, 60, 40, 10, 0.0, 0.7, np.pi / 4]  # the other class: kept
    rows[0, :, 3] = [100, 60, 40, 10, 0.6, 0.0, -np.pi / 4]  # crosses the first at right angles: kept
    frame = Frame("s", 0, None, 0.0, image=np.zeros((400, 400, 3), np.uint8))

    found = _decoder().decode([rows], [Placement(0.5, 0, 10)], [frame])[0]

    assert found.class_id.tolist() == [0, 1, 0]
    corners = found["xyxyxyxy"]
    assert corners.shape == (3, 4, 2) and corners.dtype == np.float32
    np.testing.assert_allclose(corners[0].mean(axis=0), [200, 100], atol=1e-4)  # ((100, 60) - (0, 10)) / 0.5
    sides = np.linalg.norm(np.diff(corners[0], axis=0, append=corners[0][:1]), axis=1)
    np.testing.assert_allclose(sorted(sides), [20, 20, 80, 80], atol=1e-3)
    np.testing.assert_allclose(found["angle"], [np.pi / 4, np.pi / 4, np.pi / 4], atol=1e-6)
    np.testing.assert_allclose(found.xyxy[0], [*corners[0].min(axis=0), *corners[0].max(axis=0)])


@pytest.fixture(scope="module")
def obb():
    return AutoModel.from_pretrained(str(exported("yolov8n-obb")), confidence=0.0001)


def test_yolo_obb_when_the_untrained_export_runs_gives_corners_angles_and_their_bounds(obb, astronaut):
    found = obb(astronaut)

    assert isinstance(obb, UltralyticsObb)
    assert (obb.info.architecture, obb.info.task) == ("yolo", "oriented-object-detection")
    assert len(found) > 0 and found["xyxyxyxy"].shape == (len(found), 4, 2)
    assert ((found["angle"] >= 0) & (found["angle"] < np.pi / 2)).all()
    within = np.clip(found["xyxyxyxy"], 0, 512)
    np.testing.assert_allclose(found.xyxy[:, :2], within.min(axis=1), atol=1e-3)
    np.testing.assert_allclose(found.xyxy[:, 2:], within.max(axis=1), atol=1e-3)
