"""The classify stage: PP-OCR's text-direction classifier run on each detected text line's crop,
through `streamer.open` with a config; the detector is the test's, drawing where it found the lines."""

from __future__ import annotations

import numpy as np
import pytest

from streamer.config.schema import ClassifyStageConfig
from streamer.errors import ParameterError
from streamer.frames import Detections, Frame, ModelInfo, detections_to_dicts
from streamer.pipeline.crops import box_crops, padded
from streamer.pipeline.stages import build_stage
from streamer.sinks import CallbackSink
from tests.media import write_image_clip
from tests.pipeline.helpers import file_source, pipeline_config, run_pipeline

# Where the picture has an upright line, an upside-down one, a line too thin to classify, and a face.
BOXES = np.array([[20, 20, 380, 68], [20, 100, 380, 148], [20, 180, 200, 185], [420, 20, 500, 120]], np.float32)
CLASS_IDS = np.array([0, 0, 0, 1], np.int64)  # text, text, text, face


class LineFinder:
    """A detector the test controls: it finds the boxes above in every frame."""

    info = ModelInfo("line-finder", "test", "text-detection", "test", "test", "ab" * 32, ("text", "face"), (32, 32))

    def detect(self, frames: list[Frame]) -> list[Detections]:
        return [
            Detections(xyxy=BOXES.copy(), confidence=np.full(4, 0.9, np.float32), class_id=CLASS_IDS.copy())
            for _ in frames
        ]


def text_line(text: str, width: int, height: int) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (width, height), "white")
    ImageDraw.Draw(image).text((8, 6), text, fill="black", font=ImageFont.load_default(size=28))
    return np.asarray(image)


@pytest.fixture(scope="module")
def picture_clip(tmp_path_factory):
    picture = np.full((240, 520, 3), 200, np.uint8)
    line = text_line("Gate 4 closed", 360, 48)
    picture[20:68, 20:380] = line
    picture[100:148, 20:380] = line[::-1, ::-1]  # turned half a turn
    picture[180:185, 20:200] = 0
    return write_image_clip(tmp_path_factory.mktemp("classify") / "lines.mp4", picture, frames=3)


@pytest.fixture(scope="module")
def classified(picture_clip):
    """What a callback sink gets from the clip with a classify stage for the text boxes."""
    results = []
    stage = {"type": "classify", "model": "ppocr-text-direction", "classes": ["text"], "min_size": 8, "padding": 0.02}
    config = pipeline_config(file_source(picture_clip, "lines"), stages=[stage])
    run_pipeline(config, LineFinder(), sinks=[CallbackSink(results.append)])
    return results


def test_classify_when_text_lines_are_upright_or_upside_down_tells_which(classified):
    assert len(classified) == 3
    for result in classified:
        found = result.detections
        assert found.data["crop_class"].tolist() == ["0", "180", "", ""]
        assert found.data["crop_class_id"].tolist() == [0, 1, -1, -1]
        assert (found.data["crop_score"][:2] > 0.8).all() and found.data["crop_score"][2:].tolist() == [0.0, 0.0]


def test_classify_when_classifying_keeps_the_detectors_boxes_and_adds_the_scores(classified):
    found = classified[0].detections

    assert np.array_equal(found.xyxy, BOXES) and found.class_id.tolist() == CLASS_IDS.tolist()
    scores = found.data["crop_scores"]
    assert scores.shape == (4, 2) and scores.dtype == np.float32 and found.class_scores is None
    assert np.allclose(scores[:2].sum(axis=1), 1.0, atol=1e-4)
    assert scores[2:].tolist() == [[0.0, 0.0], [0.0, 0.0]]  # too thin; not a class asked for


async def test_classify_when_the_model_is_no_classifier_raises_a_parameter_error():
    with pytest.raises(ParameterError, match="not a classification one"):
        await build_stage(ClassifyStageConfig(model="centerface"))


def test_classify_when_boxes_are_padded_grows_them_inside_the_frame():
    frame = Frame("cam", 0, 0.0, 0.0, image=np.zeros((100, 200, 3), np.uint8))

    grown = padded(np.array([[0, 10, 100, 60]], np.float32), 0.1, frame.width, frame.height)
    (crop,) = box_crops(frame, np.array([[0, 10, 100, 60]], np.float32), padding=0.1)

    assert grown.tolist() == [[0.0, 5.0, 110.0, 65.0]]
    assert crop.shape == (60, 110, 3)


def test_detections_to_dicts_when_a_classify_stage_ran_writes_its_answer_in_its_own_classes():
    detections = Detections(
        xyxy=np.array([[0, 0, 10, 10], [5, 5, 20, 20]], np.float32),
        confidence=np.array([0.9, 0.8], np.float32),
        class_id=np.array([0, 0]),
        data={
            "crop_class": np.array(["180", ""], object),
            "crop_class_id": np.array([1, -1], np.int64),
            "crop_score": np.array([0.97, 0.0], np.float32),
            "crop_scores": np.array([[0.03, 0.97], [0.0, 0.0]], np.float32),
        },
    )

    rows = detections_to_dicts(detections, ["face", "face"])

    assert [(row["class_name"], row["crop_class"], row["crop_class_id"], row["crop_score"]) for row in rows] == [
        ("face", "180", 1, 0.97),
        ("face", "", -1, 0.0),
    ]
    assert all("class_scores" not in row and "crop_scores" not in row for row in rows)
