"""Ultralytics YOLOv8 exports: metadata read from the file, decoding, static batch and fp16 inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from streamer.engine.preprocess import Placement
from streamer.engine import AutoModel
from streamer.engine.models.yolo import UltralyticsYolo
from streamer.frames import Frame
from tests.conftest import ASTRONAUT_FACE
from tests.engine.test_centerface import iou


@pytest.fixture(scope="module")
def yolo(yolo_path):
    return AutoModel.from_pretrained(str(yolo_path))


def test_yolo_reads_class_names_and_input_size_from_the_file(yolo):
    assert yolo.info.architecture == "yolo"
    assert len(yolo.info.class_names) == 18
    assert yolo.info.class_names[1] == "FACE_FEMALE"
    assert yolo.info.input_size == (320, 320)
    assert (yolo.spec.width, yolo.spec.height) == (320, 320)


def test_yolo_finds_the_astronauts_face_on_the_real_export(yolo, astronaut):
    found = yolo(astronaut)

    faces = found[np.array(yolo.info.class_names)[found.class_id] == "FACE_FEMALE"]
    assert len(faces) == 1
    assert iou(faces.xyxy[0], ASTRONAUT_FACE) > 0.5


def _decoder(confidence=0.25, iou=0.45) -> UltralyticsYolo:
    decoder = UltralyticsYolo.__new__(UltralyticsYolo)
    decoder.confidence, decoder.iou = confidence, iou
    return decoder


def _prediction(rows: list[tuple[float, float, float, float, int, float]], classes: int = 3) -> np.ndarray:
    """(cx, cy, w, h, class, score) rows -> the export's (4 + classes, anchors) layout."""
    out = np.zeros((4 + classes, len(rows)), np.float32)
    for anchor, (cx, cy, w, h, cls, score) in enumerate(rows):
        out[:4, anchor] = cx, cy, w, h
        out[4 + cls, anchor] = score
    return out


def test_yolo_decode_suppresses_overlaps_within_a_class_only():
    prediction = _prediction([
        (50, 50, 20, 20, 0, 0.9),
        (51, 50, 20, 20, 0, 0.8),  # same class, overlapping: suppressed
        (51, 50, 20, 20, 1, 0.7),  # other class, same place: kept
        (150, 50, 20, 20, 2, 0.1),  # below the confidence threshold
    ])
    frame = Frame("s", 0, None, 0.0, image=np.zeros((200, 200, 3), np.uint8))

    found = _decoder().decode([prediction[None]], [Placement(1.0, 0, 0)], [frame])[0]

    assert sorted(found.class_id.tolist()) == [0, 1]
    np.testing.assert_allclose(found.xyxy[found.class_id == 0][0], [40, 40, 60, 60])


def test_yolo_decode_undoes_the_letterbox_and_clips_to_the_frame():
    prediction = _prediction([(160, 100, 40, 400, 0, 0.9)])
    frame = Frame("s", 0, None, 0.0, image=np.zeros((180, 640, 3), np.uint8))  # letterboxed: gain 0.5, top 70

    found = _decoder().decode([prediction[None]], [Placement(0.5, 0, 70)], [frame])[0]

    np.testing.assert_allclose(found.xyxy[0], [280, 0, 360, 180])


def _static_batch_copy(path: Path, out: Path, batch: int) -> Path:
    model = onnx.load(str(path))
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = batch
    onnx.save(model, str(out))
    return out


def _fp16_input_copy(path: Path, out: Path) -> Path:
    """The same network behind a float16 input (a Cast in front), metadata kept."""
    model = onnx.load(str(path))
    original = model.graph.input[0]
    half = onnx.helper.make_tensor_value_info("images_fp16", onnx.TensorProto.FLOAT16, ["batch", 3, "height", "width"])
    cast = onnx.helper.make_node("Cast", ["images_fp16"], [original.name], to=onnx.TensorProto.FLOAT)
    model.graph.node.insert(0, cast)
    model.graph.input.remove(original)
    model.graph.input.insert(0, half)
    onnx.save(model, str(out))
    return out


def test_yolo_when_the_export_has_a_static_batch_runs_any_batch_size(yolo, yolo_path, astronaut, tmp_path):
    static = AutoModel.from_pretrained(str(_static_batch_copy(yolo_path, tmp_path / "static.onnx", batch=2)))
    images = [astronaut, astronaut[:, ::-1].copy(), astronaut]

    assert static.backend.fixed_batch == 2
    for expected, got in zip(yolo.detect(images), static.detect(images)):
        np.testing.assert_allclose(expected.xyxy, got.xyxy, atol=1e-3)


def test_yolo_when_the_export_takes_fp16_feeds_fp16(yolo, yolo_path, astronaut, tmp_path):
    half = AutoModel.from_pretrained(str(_fp16_input_copy(yolo_path, tmp_path / "fp16.onnx")))

    assert half.spec.dtype == np.float16
    expected, got = yolo(astronaut), half(astronaut)
    assert got.class_id.tolist() == expected.class_id.tolist()
    np.testing.assert_allclose(expected.xyxy, got.xyxy, atol=2.0)


@pytest.mark.parametrize(
    ("width", "height", "expected"),
    [(1920, 1080, (320, 192)), (1080, 1920, (192, 320)), (640, 640, (320, 320)), (1000, 100, (320, 32))],
)
def test_fitted_size_when_the_graph_takes_any_size_is_the_smallest_stride_multiple_holding_the_frame(
    width, height, expected
):
    from streamer.engine.preprocess import InputSpec
    from streamer.engine.models.base import fitted_size

    assert fitted_size(width, height, InputSpec(320, 320, np.dtype(np.float32)), 32) == expected


def test_yolo_with_dynamic_height_and_width_runs_16_9_frames_at_320x192_with_the_same_boxes(yolo_path, astronaut):
    fitted = AutoModel.from_pretrained(str(yolo_path))
    square = AutoModel.from_pretrained(str(yolo_path), input_size=(320, 320))  # an explicit size is kept
    wide = np.zeros((1080, 1920, 3), np.uint8)
    wide[200:712, 700:1212] = astronaut
    seen_shapes = []
    run = fitted.backend.run
    fitted.backend.run = lambda batch: seen_shapes.append(batch.shape) or run(batch)

    found, reference = fitted(wide), square(wide)

    assert fitted.fit_to_frames and not square.fit_to_frames
    assert seen_shapes == [(1, 3, 192, 320)]
    assert len(found) == len(reference) >= 1
    assert all(iou(a, b) > 0.9 for a, b in zip(found.xyxy, reference.xyxy))


def test_yolo_when_an_explicit_size_is_asked_to_fit_fits_within_it(yolo_path, astronaut):
    model = AutoModel.from_pretrained(str(yolo_path), input_size=(640, 640), fit_to_frames=True)
    seen_shapes = []
    run = model.backend.run
    model.backend.run = lambda batch: seen_shapes.append(batch.shape) or run(batch)

    model(np.zeros((1080, 1920, 3), np.uint8))

    assert model.fit_to_frames and model.spec.width_height == (640, 640)
    assert seen_shapes == [(1, 3, 384, 640)]


def test_yolo_batch_of_mixed_shapes_takes_the_size_the_widest_and_tallest_need(yolo_path, astronaut):
    model = AutoModel.from_pretrained(str(yolo_path))
    seen_shapes = []
    run = model.backend.run
    model.backend.run = lambda batch: seen_shapes.append(batch.shape) or run(batch)
    wide, tall = np.zeros((180, 320, 3), np.uint8), np.zeros((320, 180, 3), np.uint8)

    model.detect([wide, tall])

    assert seen_shapes == [(2, 3, 320, 320)]
