"""NMS-free exports, YOLOv10 / YOLO26 `end2end` and RT-DETR: the network's own top 300, never suppressed."""

from __future__ import annotations

import numpy as np
import pytest

from streamer.engine import AutoModel
from streamer.engine.models.yolo_end2end import RtDetr, UltralyticsEnd2End
from streamer.engine.postprocess import decode_end2end_batch
from streamer.engine.preprocess import Placement
from streamer.frames import Frame
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


def test_yolo_end2end_decode_undoes_the_letterbox_and_clips_to_the_frame():
    decoder = UltralyticsEnd2End.__new__(UltralyticsEnd2End)
    decoder.confidence = 0.25
    decoder.info = type("Info", (), {"class_names": ("a", "b")})()
    rows = np.array([[[20, 0, 100, 200, 0.9, 1]]], np.float32)
    frame = Frame("s", 0, None, 0.0, image=np.zeros((180, 640, 3), np.uint8))

    found = decoder.decode([rows], [Placement(0.5, 0, 70)], [frame])[0]

    np.testing.assert_allclose(found.xyxy[0], [40, 0, 200, 180])
    assert found.class_id.tolist() == [1]


@pytest.mark.parametrize(
    ("name", "family", "architecture"),
    [("yolov10n", UltralyticsEnd2End, "yolo-end2end"), ("yolo26n", UltralyticsEnd2End, "yolo-end2end"),
     ("rtdetr-l", RtDetr, "rtdetr")],
)
def test_nms_free_exports_when_loaded_by_path_give_up_to_300_boxes_unsuppressed(name, family, architecture, astronaut):
    model = AutoModel.from_pretrained(str(exported(name)), confidence=0.0)

    found = model(astronaut)

    assert type(model) is family
    assert (model.info.architecture, model.info.task) == (architecture, "object-detection")
    assert model.info.input_size == (320, 320) and len(model.info.class_names) == 80
    assert len(found) == 300  # every query comes back at confidence 0: none was suppressed
    assert (found.xyxy[:, :2] <= found.xyxy[:, 2:]).all()
    assert ((found.xyxy >= 0) & (found.xyxy <= 512)).all()
    assert ((found.class_id >= 0) & (found.class_id < 80)).all()
    assert (np.diff(found.confidence) <= 1e-6).all()  # the network's top-k, best first
