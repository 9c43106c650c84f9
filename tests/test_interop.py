"""Results convert to supervision.Detections for people who use it."""

from __future__ import annotations

import numpy as np

from streamer import to_supervision
from streamer.frames import Detections, Frame, ModelInfo, Result


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
