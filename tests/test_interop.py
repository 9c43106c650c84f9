"""Results convert to supervision.Detections for people who use it."""

from __future__ import annotations

import numpy as np
import pytest

from streamer import to_supervision
from streamer.frames import Detections, Frame, ModelInfo, Result
from streamer.interop import from_supervision, import_supervision


def test_to_supervision_keeps_boxes_scores_classes_names_and_keypoints():
    detections = Detections(
        xyxy=np.array([[1, 2, 3, 4], [5, 6, 7, 8]], np.float32),
        confidence=np.array([0.9, 0.4], np.float32),
        class_id=np.array([1, 0]),
        keypoints=np.zeros((2, 5, 2), np.float32),
    )
    info = ModelInfo("m", "yolo", "detect", "onnxruntime-cpu", "m.onnx", "0" * 64, ("cat", "dog"), (320, 320))
    result = Result(Frame("cam", 3, 0.1, 0.0, image=np.zeros((8, 8, 3), np.uint8)), detections, info)

    converted = to_supervision(result)

    np.testing.assert_array_equal(converted.xyxy, detections.xyxy)
    np.testing.assert_array_equal(converted.confidence, detections.confidence)
    assert converted.class_id.tolist() == [1, 0]
    assert converted.data["class_name"].tolist() == ["dog", "cat"]
    assert converted.data["keypoints"].shape == (2, 5, 2)
    assert len(converted[converted.confidence > 0.5]) == 1


def _sv_detections_with_everything():
    sv = import_supervision()
    mask = np.zeros((2, 6, 6), bool)
    mask[0, :2, :2] = mask[1, 3:, 3:] = True
    return sv.Detections(
        xyxy=np.array([[0, 0, 2, 2], [3, 3, 6, 6]], np.float32),
        mask=mask,
        confidence=np.array([0.5, 0.25], np.float32),
        class_id=np.array([2, 0]),
        tracker_id=np.array([11, 12]),
        data={"class_name": np.array(["car", "person"]), "keypoints": np.ones((2, 3, 2), np.float32)},
    )


def test_from_supervision_when_round_tripped_keeps_every_field():
    original = _sv_detections_with_everything()

    ours = from_supervision(original)

    assert ours.keypoints.shape == (2, 3, 2) and "keypoints" not in ours.data
    assert ours.tracker_id.tolist() == [11, 12] and ours.mask.areas().sum() == 13
    assert ours.data["class_name"].tolist() == ["car", "person"]
    assert to_supervision(ours) == original


def test_to_supervision_when_round_tripped_with_class_names_keeps_every_field():
    ours = from_supervision(_sv_detections_with_everything())
    ours.data.pop("class_name")

    back = from_supervision(to_supervision(ours, class_names=["bus", "cat"]))

    assert back.data.pop("class_name").tolist() == ["bus", "cat"]
    assert back == ours


def test_from_supervision_when_a_compact_mask_makes_it_dense():
    from supervision.detection.compact_mask import CompactMask

    original = _sv_detections_with_everything()
    compact = CompactMask.from_dense(original.mask, original.xyxy, image_shape=(6, 6))
    original.mask = compact

    assert from_supervision(original).mask.dense().tolist() == compact.to_dense().tolist()


def test_from_supervision_when_no_scores_or_classes_fills_them():
    sv = import_supervision()

    ours = from_supervision(sv.Detections(xyxy=np.array([[0, 0, 1, 1]], np.float64)))

    assert ours.confidence.tolist() == [1.0] and ours.class_id.tolist() == [-1]
    assert ours.xyxy.dtype == np.float32 and ours.tracker_id is None and ours.mask is None


def _pose_result() -> Result:
    masks = np.zeros((2, 8, 10), bool)
    masks[0, 1:4, 1:3] = masks[1, 5:, 6:] = True
    detections = Detections(
        xyxy=np.array([[1, 1, 3, 4], [6, 5, 10, 8]], np.float32),
        confidence=np.array([0.9, 0.6], np.float32),
        class_id=np.array([0, 0]),
        keypoints=np.arange(2 * 3 * 2, dtype=np.float32).reshape(2, 3, 2),
        keypoint_confidence=np.array([[0.9, 0.8, 0.1], [0.5, 0.5, 0.5]], np.float32),
        mask=masks,
        class_scores=np.array([[0.7, 0.3], [0.4, 0.6]], np.float32),
        embeddings=np.ones((2, 4), np.float32),
        text=np.array(["AB 123", ""], dtype=object),
        text_confidence=np.array([0.95, 0.0], np.float32),
        data={"xyxyxyxy": np.zeros((2, 4, 2), np.float32)},
    )
    info = ModelInfo("m", "yolo", "keypoint-detection", "onnxruntime-cpu", "m.onnx", "0" * 64, ("person",), (320, 320),
                     keypoint_names=("nose", "left_eye", "right_eye"), skeleton=((0, 1), (0, 2)))
    return Result(Frame("cam", 0, 0.0, 0.0, image=np.zeros((8, 10, 3), np.uint8)), detections, info)


def test_to_supervision_when_every_field_is_set_round_trips():
    result = _pose_result()

    converted = to_supervision(result)

    assert converted.mask.shape == (2, 8, 10) and converted.mask.sum() == result.detections.mask.areas().sum()
    assert converted.data["text"].tolist() == ["AB 123", ""] and converted.data["xyxyxyxy"].shape == (2, 4, 2)
    assert converted.data["class_name"].tolist() == ["person", "person"]
    back = from_supervision(converted)
    assert back.data.pop("class_name").tolist() == ["person", "person"]
    assert back == result.detections


def test_to_supervision_when_masks_are_not_wanted_leaves_them_out():
    assert to_supervision(_pose_result(), masks=False).mask is None


def test_to_supervision_keypoints_when_a_pose_result_gives_keypoints_with_confidence():
    from streamer.interop import to_supervision_keypoints

    keypoints = to_supervision_keypoints(_pose_result())

    assert keypoints.xy.shape == (2, 3, 2)
    assert keypoints.keypoint_confidence.tolist()[0] == pytest.approx([0.9, 0.8, 0.1])
    assert keypoints.class_id.tolist() == [0, 0] and keypoints.data["class_name"].tolist() == ["person"] * 2
    assert len(to_supervision_keypoints(Detections.empty())) == 0


def test_from_supervision_when_keypoints_are_not_points_keeps_them_in_data():
    sv = import_supervision()

    ours = from_supervision(sv.Detections(xyxy=np.zeros((1, 4)), data={"keypoints": np.zeros((1, 3))}))

    assert ours.keypoints is None and ours.data["keypoints"].shape == (1, 3)
