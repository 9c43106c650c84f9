"""NMS-free exports, YOLOv10 / YOLO26 `end2end` and RT-DETR: the network's own top 300, never suppressed."""

from __future__ import annotations

import numpy as np
import pytest

from streamer.engine import AutoModel
from streamer.engine.models.yolo_end2end import End2EndObb, End2EndPose, End2EndSegment, RtDetr, UltralyticsEnd2End
from streamer.engine.postprocess import decode_end2end_batch
from streamer.engine.preprocess import Placement
from streamer.frames import Frame
from tests.engine.test_yolo_segment import _proto
from tests.engine.ultralytics_exports import exported


def test_decode_end2end_batch_when_boxes_overlap_keeps_them_all_above_the_threshold():
    rows = np.array([[
        [10, 10, 50, 50, 0.9, 3],
        [11, 10, 51, 50, 0.8, 3],  # the same object again: an NMS-free head means it, nothing suppresses it
        [60, 60, 90, 90, 0.2, 1],  # below the threshold
    ], [
        [0, 0, 0, 0, 0.0, 0],
    ] * 3], np.float32)

    (xyxy, score, class_id), (none, _, _) = decode_end2end_batch(rows, 0.25, classes=80)

    np.testing.assert_allclose(xyxy, [[10, 10, 50, 50], [11, 10, 51, 50]])
    np.testing.assert_allclose(score, [0.9, 0.8])
    assert class_id.tolist() == [3, 3] and class_id.dtype == np.int64 and none.shape == (0, 4)


def test_decode_end2end_batch_when_boxes_are_fractions_of_the_input_scales_them_to_its_pixels():
    rows = np.array([[[0.5, 0.25, 0.2, 0.1, 0.7, 2]]], np.float32)  # cx, cy, w, h of a 320 x 160 input

    ((xyxy, score, class_id),) = decode_end2end_batch(rows, 0.25, classes=80, normalized_to=(320, 160))

    np.testing.assert_allclose(xyxy, [[128, 32, 192, 48]])
    assert class_id.tolist() == [2]


@pytest.mark.parametrize("classes", [3, 2])
def test_decode_end2end_batch_when_rt_detr_gives_a_score_per_class_takes_the_best(classes):
    rows = np.zeros((1, 2, 4 + classes), np.float32)  # RT-DETR before Ultralytics 8.4: sigmoid score per class
    rows[0, 0] = [0.5, 0.5, 0.5, 0.5, 0.1, 0.6, *[0.05] * (classes - 2)]
    rows[0, 1] = [0.2, 0.2, 0.1, 0.1, 0.3, 0.1, *[0.05] * (classes - 2)]

    ((xyxy, score, class_id),) = decode_end2end_batch(rows, 0.25, classes, normalized_to=(100, 100))

    assert class_id.tolist() == [1, 0]
    np.testing.assert_allclose(score, [0.6, 0.3])
    np.testing.assert_allclose(xyxy[0], [25, 25, 75, 75])


def _nms_free(family, classes: int = 2, **attributes):
    decoder = family.__new__(family)
    decoder.confidence = 0.25
    decoder.info = type("Info", (), {"class_names": tuple("abcdefgh"[:classes])})()
    for name, value in attributes.items():
        setattr(decoder, name, value)
    return decoder


def _frame(width: int, height: int) -> Frame:
    return Frame("s", 0, None, 0.0, image=np.zeros((height, width, 3), np.uint8))


def test_yolo_end2end_decode_undoes_the_letterbox_and_clips_to_the_frame():
    rows = np.array([[[20, 0, 100, 200, 0.9, 1]]], np.float32)

    found = _nms_free(UltralyticsEnd2End).decode([rows], [Placement(0.5, 0, 70)], [_frame(640, 180)])[0]

    np.testing.assert_allclose(found.xyxy[0], [40, 0, 200, 180])
    assert found.class_id.tolist() == [1]


def test_end2end_segment_decode_masks_each_row_above_the_threshold_even_where_rows_overlap():
    rows = np.array([[
        [10, 10, 70, 50, 0.9, 0, 1.0, 0.0],  # x1, y1, x2, y2, score, class, 2 mask coefficients
        [10, 10, 70, 50, 0.8, 0, -1.0, 0.0],  # the same box: kept (no NMS), the inverse mask
        [0, 0, 10, 10, 0.1, 1, 1.0, 0.0],  # below the threshold
    ]], np.float32)

    found = _nms_free(End2EndSegment).decode([rows, _proto()[None]], [Placement(1.0, 0, 0)], [_frame(80, 80)])[0]

    assert len(found) == 2 and len(found.mask) == 2
    first, second = found.mask.dense()
    assert first.sum() == 20 * 40 - 4 and not (first & second).any()
    assert (first | second)[10:50, 10:70].all()


def test_end2end_pose_decode_reads_the_keypoints_after_the_class():
    rows = np.array([[[10, 20, 50, 80, 0.9, 0, 30, 40, 0.7, 35, 60, 0.1]]], np.float32)  # 2 keypoints (x, y, score)

    found = _nms_free(End2EndPose, classes=1, keypoints_shape=(2, 3)).decode(
        [rows], [Placement(2.0, 0, 0)], [_frame(100, 100)]
    )[0]

    np.testing.assert_allclose(found.xyxy[0], [5, 10, 25, 40])
    np.testing.assert_allclose(found.keypoints[0], [[15, 20], [17.5, 30]])
    np.testing.assert_allclose(found.keypoint_confidence[0], [0.7, 0.1])


def test_end2end_obb_decode_reads_centre_size_and_the_angle_after_the_class():
    rows = np.array([[[100, 60, 40, 10, 0.9, 1, np.pi / 2]]], np.float32)  # cx, cy, w, h, score, class, angle

    found = _nms_free(End2EndObb).decode([rows], [Placement(1.0, 0, 0)], [_frame(200, 200)])[0]

    np.testing.assert_allclose(found["angle"], [0.0], atol=1e-6)  # a quarter turn: w and h swapped instead
    np.testing.assert_allclose(found.xyxy[0], [95, 40, 105, 80], atol=1e-4)
    assert found.class_id.tolist() == [1]


@pytest.mark.parametrize(
    ("name", "family", "architecture", "task"),
    [
        ("yolov10n", UltralyticsEnd2End, "yolo-end2end", "object-detection"),
        ("yolo26n", UltralyticsEnd2End, "yolo-end2end", "object-detection"),
        ("rtdetr-l", RtDetr, "rtdetr", "object-detection"),
        ("yolo26n-seg", End2EndSegment, "yolo-end2end", "instance-segmentation"),
        ("yolo26n-pose", End2EndPose, "yolo-end2end", "keypoint-detection"),
        ("yolo26n-obb", End2EndObb, "yolo-end2end", "oriented-object-detection"),
    ],
)
def test_nms_free_exports_when_loaded_by_path_give_all_300_rows_unsuppressed(name, family, architecture, task, astronaut):
    model = AutoModel.from_pretrained(str(exported(name)), confidence=0.0)
    small = astronaut[::4, ::4].copy()  # 128 x 128: masks stay cheap

    found = model(small)

    assert type(model) is family and (model.info.architecture, model.info.task) == (architecture, task)
    assert model.info.input_size == (320, 320)
    assert len(found) == 300  # every query comes back at confidence 0: none was suppressed
    assert (found.xyxy[:, :2] <= found.xyxy[:, 2:]).all() and ((found.xyxy >= 0) & (found.xyxy <= 128)).all()
    assert ((found.class_id >= 0) & (found.class_id < len(model.info.class_names))).all()
    assert (np.diff(found.confidence) <= 1e-6).all()  # the network's top-k, best first
    if family is End2EndSegment:
        assert len(found.mask) == 300 and found.mask.frame_size == (128, 128)
    if family is End2EndPose:
        assert found.keypoints.shape == (300, 17, 2) and found.keypoint_confidence.shape == (300, 17)
        assert model.info.keypoint_names[0] == "nose"
    if family is End2EndObb:
        assert found["xyxyxyxy"].shape == (300, 4, 2)
