"""Ultralytics classification: a frame-level result, one full-frame box with every class's score."""

from __future__ import annotations

import numpy as np
import pytest

from streamer.engine import AutoModel
from streamer.engine.models.yolo_classify import UltralyticsClassify
from streamer.engine.preprocess import Placement
from streamer.frames import Frame
from tests.engine.ultralytics_exports import exported


@pytest.fixture(scope="module")
def classify():
    return AutoModel.from_pretrained(str(exported("yolov8n-cls")))


def test_yolo_classify_when_loaded_by_path_reads_its_task_classes_and_size_from_the_metadata(classify):
    assert isinstance(classify, UltralyticsClassify)
    assert (classify.info.architecture, classify.info.task) == ("yolo", "classification")
    assert len(classify.info.class_names) == 1000 and classify.info.input_size == (320, 320)
    assert (classify.spec.scale, classify.spec.offset) == (1 / 255, 0.0)


def test_yolo_classify_when_the_untrained_export_runs_gives_one_full_frame_box_with_all_scores(classify, astronaut):
    found = classify.detect([astronaut, astronaut[:100]])

    for result, image in zip(found, [astronaut, astronaut[:100]]):
        assert len(result) == 1
        np.testing.assert_array_equal(result.xyxy[0], [0, 0, image.shape[1], image.shape[0]])
        assert result.class_scores.shape == (1, 1000) and result.class_scores.dtype == np.float32
        assert abs(result.class_scores.sum() - 1) < 1e-3  # the export's own softmax
        assert result.class_id[0] == result.class_scores[0].argmax()
        assert result.confidence[0] == result.class_scores[0].max()


def _decoder(confidence: float) -> UltralyticsClassify:
    decoder = UltralyticsClassify.__new__(UltralyticsClassify)
    decoder.confidence = confidence
    return decoder


@pytest.mark.parametrize(("confidence", "expected"), [(0.0, [2, 0]), (0.5, [2, None])])
def test_yolo_classify_decode_when_the_best_score_is_below_the_threshold_gives_no_box(confidence, expected):
    scores = np.array([[0.1, 0.2, 0.7], [0.4, 0.35, 0.25]], np.float32)
    frames = [Frame("s", i, None, 0.0, image=np.zeros((10, 20, 3), np.uint8)) for i in range(2)]

    found = _decoder(confidence).decode([scores], [Placement(1.0, 0, 0)] * 2, frames)

    assert [int(f.class_id[0]) if len(f) else None for f in found] == expected
    np.testing.assert_array_equal(found[0].class_scores, scores[:1])
