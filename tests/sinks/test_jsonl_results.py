"""The JSONL sink writes every task's results in the versioned schema of docs/results.md."""

from __future__ import annotations

import json

import numpy as np
import pytest

from streamer.frames import RESULTS_SCHEMA, Detections, Frame, ModelInfo, Result
from streamer.sinks import JsonlSink

WIDTH, HEIGHT = 10, 8


def _info(task: str, classes: tuple[str, ...] = ("person", "car", "bus", "van", "truck", "bike"), **more) -> ModelInfo:
    return ModelInfo("m", "yolo", task, "onnxruntime-cpu", "m.onnx", "0" * 64, classes, (320, 320), **more)


def _result(detections: Detections, info: ModelInfo) -> Result:
    frame = Frame("cam", 4, 0.5, 1.7e9, image=np.zeros((HEIGHT, WIDTH, 3), np.uint8))
    return Result(frame, detections, info)


def _everything() -> Detections:
    masks = np.zeros((2, HEIGHT, WIDTH), bool)
    masks[0, 1:3, 2:4] = masks[1, 6:, 8:] = True
    return Detections(
        xyxy=np.array([[2, 1, 4, 3], [8, 6, 10, 8]], np.float32),
        confidence=np.array([0.9, 0.6], np.float32),
        class_id=np.array([0, 1]),
        tracker_id=np.array([3, 4]),
        keypoints=np.array([[[2.5, 1.5], [3.5, 2.5]], [[8.5, 6.5], [9.5, 7.5]]], np.float32),
        keypoint_confidence=np.array([[0.9, 0.2], [0.5, 0.5]], np.float32),
        mask=masks,
        class_scores=np.array([[0.6, 0.1, 0.1, 0.05, 0.1, 0.05], [0.0, 0.9, 0.1, 0.0, 0.0, 0.0]], np.float32),
        embeddings=np.array([[0.5, -0.5], [1.0, 0.0]], np.float32),
        text=np.array(["AB 123", ""], dtype=object),
        text_confidence=np.array([0.95, 0.0], np.float32),
        data={"xyxyxyxy": np.array([[[2, 1], [4, 1], [4, 3], [2, 3]]] * 2, np.float32)},
    )


async def _lines(tmp_path, results, **options) -> list[dict]:
    sink = JsonlSink(path=str(tmp_path / "out.jsonl"), **options)
    async with sink:
        for result in results:
            await sink.write(result)
    return [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]


def _decode_coco(rle: dict) -> np.ndarray:
    height, width = rle["size"]
    flat = np.repeat(np.arange(len(rle["counts"])) % 2 == 1, rle["counts"])
    return flat.reshape(width, height).T


async def test_jsonl_results_when_every_field_is_set_writes_each_in_the_schema(tmp_path):
    result = _result(_everything(), _info("instance-segmentation", keypoint_names=("a", "b"), skeleton=((0, 1),)))

    (line,) = await _lines(tmp_path, [result])

    assert line["schema"] == RESULTS_SCHEMA == 2
    assert line["model"]["task"] == "instance-segmentation"
    assert line["model"]["keypoint_names"] == ["a", "b"] and line["model"]["skeleton"] == [[0, 1]]
    first, second = line["detections"]
    assert first["keypoints"] == [[2.5, 1.5, 0.9], [3.5, 2.5, 0.2]]
    assert first["xyxyxyxy"] == [[2, 1], [4, 1], [4, 3], [2, 3]]
    assert first["text"] == "AB 123" and first["text_confidence"] == 0.95
    assert first["tracker_id"] == 3 and "embedding" not in first
    np.testing.assert_array_equal(_decode_coco(second["mask"]), result.detections.mask.dense()[1])
    assert second["mask"]["size"] == [HEIGHT, WIDTH]


async def test_jsonl_results_when_class_scores_are_set_writes_the_top_five(tmp_path):
    (line,) = await _lines(tmp_path, [_result(_everything(), _info("classification"))])

    top = line["detections"][0]["class_scores"]
    assert len(top) == 5
    assert top[0] == {"class_id": 0, "class_name": "person", "score": 0.6}
    assert [entry["class_id"] for entry in top[1:4]] == [1, 2, 4]  # ties keep class order
    assert line["detections"][1]["class_scores"][0]["class_name"] == "car"


async def test_jsonl_results_when_embeddings_are_asked_for_writes_them(tmp_path):
    (line,) = await _lines(tmp_path, [_result(_everything(), _info("embedding"))], embeddings=True)

    assert [box["embedding"] for box in line["detections"]] == [[0.5, -0.5], [1.0, 0.0]]


async def test_jsonl_results_when_the_frame_is_classified_writes_classification(tmp_path):
    whole_frame = Detections(
        xyxy=np.array([[0, 0, WIDTH, HEIGHT]], np.float32),
        confidence=np.array([0.7], np.float32),
        class_id=np.array([2]),
        class_scores=np.array([[0.1, 0.2, 0.7]], np.float32),
    )
    without_scores = Detections(whole_frame.xyxy, whole_frame.confidence, whole_frame.class_id)
    info = _info("classification", ("cat", "dog", "fox"))

    scored, top1 = await _lines(tmp_path, [_result(whole_frame, info), _result(without_scores, info)])

    assert scored["detections"] == [] and top1["detections"] == []
    assert [entry["class_name"] for entry in scored["classification"]] == ["fox", "dog", "cat"]
    assert top1["classification"] == [{"class_id": 2, "class_name": "fox", "score": 0.7}]


async def test_jsonl_results_when_boxes_are_plain_writes_no_optional_key(tmp_path):
    plain = Detections(np.array([[1, 1, 2, 2]], np.float32), np.array([0.9], np.float32), np.array([0]))

    (line,) = await _lines(tmp_path, [_result(plain, _info("object-detection"))])

    assert set(line["detections"][0]) == {"xyxy", "confidence", "class_id", "class_name"}
    assert "classification" not in line and "keypoint_names" not in line["model"]


async def test_jsonl_results_when_an_event_is_written_carries_the_schema(tmp_path):
    result = _result(_everything(), _info("object-detection"))
    event = result.emit("zone_enter", zone="bay", tracker_id=3)

    (line,) = await _lines(tmp_path, [event], kinds=["events"])

    assert line["schema"] == RESULTS_SCHEMA and line["event"] == "zone_enter" and line["zone"] == "bay"


@pytest.mark.parametrize("embeddings", ["yes", 1])
def test_jsonl_results_when_embeddings_is_not_a_bool_raises_config_error(tmp_path, embeddings):
    from streamer.errors import ConfigError

    with pytest.raises(ConfigError, match="embeddings"):
        JsonlSink(path=str(tmp_path / "out.jsonl"), embeddings=embeddings)
