"""Pipelines that read text: PP-OCR's detector then recogniser over a frame, any detector's boxes
read by the recogniser, and the OCR pipeline as a `model` stage in a running stream."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import streamer
from streamer.engine import AutoModelPipeline
from streamer.engine.pipelines import ReadText
from streamer.frames import Detections, ModelInfo
from tests.engine.test_ocr import ink_box, render
from tests.media import write_image_clip

SIGN = [((40, 40), "STREAMER"), ((300, 40), "2026"), ((200, 180), "AB12CDE")]
SIGN_SIZE = (640, 288)


@pytest.fixture(scope="module")
def ocr():
    return AutoModelPipeline.from_pretrained("ocr")


class PlateFinder:
    """A stand-in plate detector: the boxes it is given, whatever the frame (class 0, "plate")."""

    def __init__(self, boxes: list[list[float]]) -> None:
        self.boxes = np.array(boxes, np.float32)
        self.info = ModelInfo("plates", "test", "object-detection", "none", "test", "0" * 64, ("plate",), (0, 0))

    def detect(self, frames):
        n = len(self.boxes)
        return [
            Detections(xyxy=self.boxes.copy(), confidence=np.full(n, 0.8, np.float32), class_id=np.zeros(n, np.int64))
            for _ in frames
        ]


def test_ocr_pipeline_reads_each_line_of_a_frame_in_reading_order(ocr):
    lines = ocr(render(SIGN, size=SIGN_SIZE))

    assert list(lines.text) == ["STREAMER", "2026", "AB12CDE"]
    assert (lines.text_confidence > 0.9).all()
    assert lines.data["xyxyxyxy"].shape == (3, 4, 2)
    assert ocr.info.model_id == "ocr" and ocr.info.class_names == ("text",)
    assert "ppocr-det" in ocr.info.package and "ppocr-rec" in ocr.info.package


def test_ocr_pipeline_when_a_frame_has_no_text_gives_no_lines_with_empty_text_columns(ocr):
    blank, sign = ocr.detect([np.full((240, 320, 3), 255, np.uint8), render(SIGN, size=SIGN_SIZE)])

    assert len(blank) == 0 and blank.text.shape == (0,) and blank.text_confidence.shape == (0,)
    assert len(sign) == 3


def test_ocr_pipeline_when_the_sign_is_tilted_reads_it_along_its_corners(ocr):
    tilted = Image.fromarray(render([((120, 200), "AB12CDE")], font_size=56)).rotate(15, fillcolor="white")

    lines = ocr(np.asarray(tilted))

    assert list(lines.text) == ["AB12CDE"]
    top_edge = lines.data["xyxyxyxy"][0, 1] - lines.data["xyxyxyxy"][0, 0]
    assert np.degrees(np.arctan2(-top_edge[1], top_edge[0])) == pytest.approx(15, abs=3)


def test_read_text_when_the_detector_finds_plates_puts_each_crops_text_on_its_box(ocr):
    image = render([((200, 300), "AB12CDE")])
    plate = ink_box(image) + np.array([-12, -10, 12, 10], np.float32)  # a plate: the text and its border
    blank = [20.0, 20.0, 180.0, 80.0]
    finder = PlateFinder([plate.tolist(), blank])
    pipeline = ReadText("plate-reader", {"detector": finder, "recognizer": ocr.models["recognizer"]})

    plates = pipeline.detect([image, image])

    for found in plates:
        assert list(found.text) == ["AB12CDE", ""]  # a box of another detector is kept, read or not
        assert found.text_confidence[0] > 0.9 and found.text_confidence[1] == 0.0
        assert list(found.class_id) == [0, 0] and np.allclose(found.xyxy[0], plate)


async def test_ocr_pipeline_as_a_model_stage_writes_each_lines_text_with_its_box(centerface, tmp_path):
    clip = write_image_clip(tmp_path / "sign.mp4", render(SIGN, size=SIGN_SIZE), frames=2)
    out = tmp_path / "out.jsonl"
    config = {
        "sources": [{"type": "file", "id": "sign", "path": str(clip)}],
        "stages": [{"type": "model", "pipeline": "ocr", "key": "ocr"}],
        "sinks": [{"type": "jsonl", "path": str(out)}],
    }

    async with streamer.open(config, model=centerface) as stream:
        await stream.wait()

    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 2
    for line in lines:
        assert [box["text"] for box in line["ocr"]] == ["STREAMER", "2026", "AB12CDE"]
        assert all(box["text_confidence"] > 0.9 and len(box["xyxyxyxy"]) == 4 for box in line["ocr"])


async def test_recognizer_as_a_model_stage_reads_the_text_in_each_of_the_streams_own_boxes(ocr, tmp_path):
    clip = write_image_clip(tmp_path / "plate.mp4", render([((200, 120), "AB12CDE")], size=SIGN_SIZE), frames=2)
    out = tmp_path / "out.jsonl"
    config = {
        "sources": [{"type": "file", "id": "plate", "path": str(clip)}],
        "stages": [{"type": "model", "model": "ppocr-rec"}],
        "sinks": [{"type": "jsonl", "path": str(out)}],
    }

    async with streamer.open(config, model=ocr.models["detector"]) as stream:  # the stream's detector finds it
        await stream.wait()

    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [[box["text"] for box in line["detections"]] for line in lines] == [["AB12CDE"], ["AB12CDE"]]
    assert all(line["detections"][0]["text_confidence"] > 0.9 and "stage" not in line for line in lines)
