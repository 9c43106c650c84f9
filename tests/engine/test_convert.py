"""ONNX -> PyTorch conversion: real models converted, loaded through AutoModel, compared with ONNX Runtime."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import msgspec
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from streamer.cli import main
from streamer.engine import AutoModel
from streamer.engine.entities import make_options
from streamer.engine.backends.torch import TorchBackend
from streamer.engine.convert import convert_model, convert_to_torch, import_onnx2torch
from streamer.engine.models.base import fitted_size
from streamer.engine.providers.embedded import EMBEDDED, embedded_document
from streamer.errors import MissingDependencyError, ModelFormatError
from tests.engine.test_centerface import iou

pytest.importorskip("torch")
if importlib.util.find_spec("onnx2torch") is None:  # importorskip would import it, and it imports torchvision
    pytest.skip("onnx2torch is not installed: pip install --no-deps onnx2torch==1.5.15", allow_module_level=True)
pytestmark = pytest.mark.filterwarnings(r"ignore:`torch\.jit\.\w+` is deprecated:DeprecationWarning")

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def yolo_torchscript(yolo_path, cache) -> Path:
    return convert_to_torch(yolo_path, cache_dir=cache)


@pytest.fixture(scope="module")
def yolo_onnx(yolo_path):
    return AutoModel.from_pretrained(str(yolo_path))


@pytest.fixture(scope="module")
def yolo_torch(yolo_torchscript):
    return AutoModel.from_pretrained(str(yolo_torchscript), backend="torch")


@pytest.fixture(scope="module")
def frames(astronaut) -> list[np.ndarray]:
    """Three different frames: the photo, its mirror image, and a wide 16:9 crop of it."""
    return [astronaut, np.ascontiguousarray(astronaut[:, ::-1]), np.ascontiguousarray(astronaut[:288])]


def assert_same_detections(got, want) -> None:
    """Each expected box has a converted twin: same class, IoU > 0.99, confidence within 1e-3."""
    assert len(got) == len(want) > 0
    for box, confidence, class_id in zip(want.xyxy, want.confidence, want.class_id):
        overlaps = [iou(box, other) for other in got.xyxy]
        twin = int(np.argmax(overlaps))
        assert overlaps[twin] > 0.99
        assert got.class_id[twin] == class_id
        assert abs(got.confidence[twin] - confidence) < 1e-3


def write_graph(path: Path, op_type: str, **attributes) -> Path:
    """A one-node ONNX model of `op_type` over an image batch, described as an Ultralytics export."""
    images = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, "height", "width"])
    output = helper.make_tensor_value_info("output0", TensorProto.FLOAT, None)
    graph = helper.make_graph([helper.make_node(op_type, ["images"], ["output0"], **attributes)], "g", [images], [output])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    helper.set_model_props(model, {"author": "Ultralytics", "task": "detect", "names": "{0: 'face'}"})
    path.write_bytes(model.SerializeToString())
    return path


@pytest.mark.parametrize("count", [1, 3])
def test_convert_to_torch_when_loaded_with_backend_torch_matches_onnx_runtime(yolo_torch, yolo_onnx, frames, count):
    batch = frames[:count]

    got, want = yolo_torch.detect(batch), yolo_onnx.detect(batch)

    assert yolo_torch.info.backend == "torch-cpu" and yolo_onnx.info.backend.startswith("onnxruntime")
    for converted, reference in zip(got, want):
        assert_same_detections(converted, reference)


def test_convert_to_torch_when_frames_are_wide_runs_at_the_fitted_non_square_size(yolo_torch, yolo_onnx, frames):
    wide = frames[2]
    assert yolo_torch.fit_to_frames
    assert fitted_size(wide.shape[1], wide.shape[0], yolo_torch.spec, yolo_torch.stride) == (320, 192)
    images = np.random.default_rng(0).random((3, 3, 192, 320), dtype=np.float32)

    raw = yolo_torch.backend.run(images)[0]

    reference = yolo_onnx.backend.run(images)[0]
    assert raw.shape == reference.shape == (3, 22, 1260)  # 1260 anchors: 192 x 320, not 320 x 320
    np.testing.assert_allclose(raw, reference, atol=1e-3 * np.abs(reference).max())
    assert_same_detections(yolo_torch(wide), yolo_onnx(wide))


def test_convert_to_torch_when_loaded_keeps_the_exports_class_names_and_input_size(yolo_torchscript, yolo_torch, yolo_path):
    manifest = json.loads((yolo_torchscript / "model.json").read_text())
    source = {prop.key: prop.value for prop in onnx.load(str(yolo_path), load_external_data=False).metadata_props}

    assert yolo_torch.info.class_names[1] == "FACE_FEMALE" and len(yolo_torch.info.class_names) == 18
    assert yolo_torch.info.input_size == (320, 320)
    assert manifest["architecture"] == "yolo" and manifest["task"] == "object-detection"
    assert manifest["class_names"] == list(yolo_torch.info.class_names) and manifest["input_size"] == [320, 320]
    assert yolo_torch.backend.metadata == source  # names, imgsz, stride, author... as the ONNX had them
    packages = {package["package_id"]: package for package in manifest["packages"]}
    assert set(packages) == {"torchscript-fp32", "torchscript-fp16"}
    assert packages["torchscript-fp32"]["backend"] == "torch" and packages["torchscript-fp32"]["format"] == "torchscript"
    assert packages["torchscript-fp32"]["files"][0]["sha256"] == packages["torchscript-fp16"]["files"][0]["sha256"]


def test_convert_to_torch_when_called_again_reuses_the_cached_package(yolo_torchscript, yolo_path, cache):
    model_file = yolo_torchscript / "torchscript-fp32" / "model.torchscript"
    before = [(path.stat().st_ino, path.stat().st_mtime_ns) for path in (model_file, yolo_torchscript / "model.json")]

    again = convert_to_torch(yolo_path, cache_dir=cache)

    assert again == yolo_torchscript
    assert again.is_relative_to(cache / "converted")
    assert [(path.stat().st_ino, path.stat().st_mtime_ns) for path in (model_file, again / "model.json")] == before


def test_convert_to_torch_when_the_cached_file_is_damaged_converts_again(yolo_torchscript, yolo_path, tmp_path):
    cache = tmp_path / "cache"
    folder = cache / yolo_torchscript.relative_to(yolo_torchscript.parents[2])
    shutil.copytree(yolo_torchscript, folder)
    model_file = folder / "torchscript-fp32" / "model.torchscript"
    model_file.write_bytes(model_file.read_bytes()[:1000])

    again = convert_to_torch(yolo_path, cache_dir=cache)

    manifest = json.loads((again / "model.json").read_text())
    assert again == folder
    assert manifest["packages"][0]["files"][0]["sha256"] == hashlib.sha256(model_file.read_bytes()).hexdigest()
    assert TorchBackend(model_file, name="again", format="torchscript").metadata["imgsz"] == "[320, 320]"


def test_convert_to_torch_when_format_is_torch_export_matches_onnx_runtime(yolo_path, cache, yolo_onnx, frames):
    folder = convert_to_torch(yolo_path, format="torch-export", cache_dir=cache)

    model = AutoModel.from_pretrained(str(folder), backend="torch")

    assert (folder / "torch-export-fp32" / "model.pt2").is_file()
    assert model.backend.input_shape[:2] == ["batch", 3] and model.fit_to_frames  # height and width stay dynamic
    for converted, reference in zip(model.detect(frames), yolo_onnx.detect(frames)):
        assert_same_detections(converted, reference)


async def test_convert_model_when_centerface_matches_onnx_runtime(cache, centerface, frames):
    folder = await convert_model("centerface", make_options(None, {"cache_dir": str(cache)}))

    model = await AutoModel.load(str(folder), backend="torch")

    assert model.info.model_id == "centerface" and model.info.class_names == ("face",)
    for converted, reference in zip(model.detect(frames), centerface.detect(frames)):
        assert_same_detections(converted, reference)
        np.testing.assert_allclose(converted.keypoints, reference.keypoints, atol=0.5)


def test_convert_to_torch_when_loaded_in_fp16_finds_the_same_boxes(yolo_torchscript, yolo_onnx, astronaut):
    model = AutoModel.from_pretrained(str(yolo_torchscript), backend="torch", quantization="fp16")
    try:
        found = model(astronaut)
    except RuntimeError as exc:  # a CPU build without float16 convolutions
        pytest.skip(f"float16 is not supported on this CPU: {exc}")

    want = yolo_onnx(astronaut)
    assert model.info.package == "torchscript-fp16" and model.backend.half
    assert len(found) == len(want)
    assert all(max(iou(box, other) for other in found.xyxy) > 0.9 for box in want.xyxy)


@pytest.mark.parametrize("described", [False, True], ids=["bare-file", "with-document"])
def test_convert_to_torch_when_file_is_not_onnx_raises_model_format_error(tmp_path, described):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x07 this is not a protobuf \xff\xff")
    document = msgspec.structs.replace(embedded_document(EMBEDDED["nudenet-320n"]), model_id="garbage")

    with pytest.raises(ModelFormatError, match="not an ONNX model") as caught:
        convert_to_torch(garbage, cache_dir=tmp_path / "cache", document=document if described else None)

    assert "garbage" in str(caught.value) and caught.value.help_url().endswith("#modelformaterror")


def test_convert_to_torch_when_an_op_has_no_converter_names_the_model_and_the_op(tmp_path):
    source = write_graph(tmp_path / "hardmax.onnx", "Hardmax", axis=1)

    with pytest.raises(ModelFormatError, match=r"hardmax\.onnx'.*onnx2torch cannot convert its op\(s\) Hardmax"):
        convert_to_torch(source, cache_dir=tmp_path / "cache")


def test_import_onnx2torch_when_it_is_missing_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx2torch", None)  # what Python does for a module that is not installed

    with pytest.raises(MissingDependencyError, match=r"pip install 'streamer\[convert\]'"):
        import_onnx2torch()


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is not None, reason="torchvision is installed here")
def test_import_onnx2torch_when_torchvision_is_absent_imports_without_it_and_leaves_no_trace():
    code = (
        "import importlib.util, sys\n"
        "from streamer.engine.convert import import_onnx2torch\n"
        "module = import_onnx2torch()\n"
        "print(module.__name__, callable(module.convert), 'torchvision' in sys.modules, "
        "importlib.util.find_spec('torchvision'))\n"
    )

    done = subprocess.run([sys.executable, "-c", code], check=False, cwd=ROOT, capture_output=True, text=True, timeout=120)

    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["onnx2torch", "True", "False", "None"]


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is not None, reason="torchvision is installed here")
def test_convert_to_torch_when_an_op_needs_torchvision_names_it(tmp_path):
    source = write_graph(tmp_path / "roi.onnx", "RoiAlign")

    with pytest.raises(MissingDependencyError, match="RoiAlign with torchvision"):
        convert_to_torch(source, cache_dir=tmp_path / "cache")


def test_models_convert_cli_when_run_prints_where_the_package_went(yolo_torchscript, yolo_path, cache, tmp_path):
    out = tmp_path / "converted"
    command = ["models", "convert", str(yolo_path), "--to", "torch", "--cache-dir", str(cache), "--out", str(out)]

    done = subprocess.run(
        [sys.executable, "-m", "streamer", *command], check=False, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )

    assert done.returncode == 0, done.stderr
    assert f"torchscript package ready in {out}" in done.stdout
    assert (out / "model.json").read_bytes() == (yolo_torchscript / "model.json").read_bytes()
    copied = TorchBackend(out / "torchscript-fp32" / "model.torchscript", name="copy", format="torchscript")
    assert copied.metadata["imgsz"] == "[320, 320]"


def test_models_convert_cli_when_file_is_not_onnx_exits_1_with_the_error(tmp_path, capsys):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model")

    code = main(["models", "convert", str(garbage), "--to", "torch", "--cache-dir", str(tmp_path / "cache")])

    error = capsys.readouterr().err
    assert code == 1
    assert error.startswith("error: model ") and "not an ONNX model" in error
