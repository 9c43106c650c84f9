"""`streamer models serve`: a real models folder served on loopback, read by the real HTTP provider."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import subprocess
import sys

import anyio
import anyio.to_thread
import pytest

from streamer.engine import AutoModel
from streamer.engine.cache import ModelCache
from streamer.engine.providers.http import HttpRegistryProvider
from streamer.engine.serve import serving_models
from streamer.errors import AccessError
from tests.engine.registry_server import document_json, sha256
from tests.engine.test_centerface import iou
from tests.conftest import ASTRONAUT_FACE

TOKEN = "serve-token-5e1d0c9a"
MODEL = "acme/body-parts"


def yolo_manifest() -> dict:
    """The folder's manifest: file names only, no URL, size or checksum (the server adds them)."""
    document = document_json(MODEL, [{"name": "model.onnx"}], batch={"dynamic": True, "min": 1, "max": 16})
    document["architecture"], document["input_size"], document["class_names"] = "yolo", [320, 320], []
    return document


@pytest.fixture
def models_folder(tmp_path, yolo_path):
    root = tmp_path / "models"
    package = root / MODEL / "onnx-fp32"
    package.mkdir(parents=True)
    shutil.copyfile(yolo_path, package / "model.onnx")
    (root / MODEL / "model.json").write_text(json.dumps(yolo_manifest()))
    (root / MODEL / "notes.txt").write_text("in the folder, named by no manifest")
    (tmp_path / "secret.txt").write_text("outside the folder")
    return root


@pytest.fixture(autouse=True)
def no_local_models(tmp_path, monkeypatch):
    """The client must find the model through the registry only, not the server's folder."""
    monkeypatch.setenv("STREAMER_MODELS_DIR", str(tmp_path / "client-has-no-models"))


async def test_serve_when_a_client_loads_the_model_it_fetches_verifies_and_caches_the_package(
    models_folder, tmp_path, yolo_path, astronaut, caplog
):
    caplog.set_level(logging.DEBUG)
    options = {"registry_url": "", "registry_token": TOKEN, "cache_dir": str(tmp_path / "cache")}
    async with serving_models(models_folder, token=TOKEN) as url:
        options["registry_url"] = url
        model = await anyio.to_thread.run_sync(lambda: AutoModel.from_pretrained(MODEL, **options))

    assert (model.info.model_id, model.info.package) == (MODEL, "onnx-fp32")
    assert model.info.sha256 == sha256(yolo_path.read_bytes())
    cached = ModelCache(tmp_path / "cache").cached_packages()
    assert [(document.model_id, package.package_id) for document, package, _ in cached] == [(MODEL, "onnx-fp32")]
    assert any(iou(box, ASTRONAUT_FACE) > 0.5 for box in model(astronaut).xyxy)
    assert TOKEN not in caplog.text


async def test_serve_when_asked_for_a_document_gives_relative_urls_sizes_and_checksums(models_folder, yolo_path):
    async with serving_models(models_folder) as url:
        document = await HttpRegistryProvider(url).get_model(MODEL)
        missing = await HttpRegistryProvider(url).get_model("acme/none")

    assert document is not None and missing is None
    (spec,) = document.packages[0].files
    assert spec.url == f"{url}/files/{MODEL}/onnx-fp32/model.onnx"
    assert (spec.size, spec.sha256) == (yolo_path.stat().st_size, sha256(yolo_path.read_bytes()))


@pytest.mark.parametrize(("token", "reason"), [("wrong-token-77", "refused the token"), (None, "wants a token")])
async def test_serve_when_the_token_is_wrong_or_missing_the_client_is_told_which(models_folder, token, reason, caplog):
    caplog.set_level(logging.DEBUG)
    async with serving_models(models_folder, token=TOKEN) as url:
        with pytest.raises(AccessError, match=reason) as refused:
            await HttpRegistryProvider(url, token, backoff_s=0.001).get_model(MODEL)

    assert "STREAMER_REGISTRY_TOKEN" in str(refused.value)
    assert TOKEN not in caplog.text and (token is None or token not in str(refused.value))


async def raw_request(url: str, request_line: str, headers: str = "") -> tuple[int, bytes]:
    """Send a request line as written (no client normalises its path); (status, body)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"{request_line} HTTP/1.1\r\nHost: {host}:{port}\r\n{headers}Connection: close\r\n\r\n".encode())
    await writer.drain()
    answer = await reader.read()
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@pytest.mark.parametrize(
    "path",
    [
        "/files/acme/../../secret.txt",
        "/files/acme/body-parts/../../../secret.txt",
        "/files/acme/body-parts/%2e%2e/%2e%2e/%2e%2e/secret.txt",
        "/files/acme%2fbody-parts%2f..%2f..%2f..%2fsecret.txt",
        "/files/acme/body-parts/notes.txt",
        "/files/acme/body-parts/model.json",
        "/files/acme/body-parts/onnx-fp32",
        "/files/acme/body-parts/onnx-fp32/",
        "/files/acme",
        "/models/../secret.txt.json",
        "/models/acme/../../secret.json",
        "/models/acme.json",
        "/",
    ],
)
async def test_serve_when_a_path_climbs_out_or_names_an_unlisted_file_answers_404(models_folder, path):
    async with serving_models(models_folder) as url:
        status, body = await raw_request(url, f"GET {path}")

    assert status == 404 and b"outside the folder" not in body and b"named by no manifest" not in body


async def test_serve_when_a_manifest_names_a_symlink_out_of_the_folder_serves_neither(models_folder, tmp_path):
    package = models_folder / "acme" / "sneaky" / "onnx-fp32"
    package.mkdir(parents=True)
    (package / "model.onnx").symlink_to(tmp_path / "secret.txt")
    (models_folder / "acme" / "sneaky" / "model.json").write_text(json.dumps(document_json("acme/sneaky", [{"name": "model.onnx"}])))

    async with serving_models(models_folder) as url:
        document = await raw_request(url, "GET /models/acme/sneaky.json")
        file = await raw_request(url, "GET /files/acme/sneaky/onnx-fp32/model.onnx")

    assert document[0] == 404 and file[0] == 404


async def test_serve_when_asked_with_other_methods_or_ranges_is_read_only_and_resumable(models_folder, yolo_path):
    path = f"/files/{MODEL}/onnx-fp32/model.onnx"
    async with serving_models(models_folder) as url:
        posted = await raw_request(url, f"POST {path}", "Content-Length: 0\r\n")
        deleted = await raw_request(url, f"DELETE /models/{MODEL}.json")
        head = await raw_request(url, f"HEAD {path}")
        ranged = await raw_request(url, f"GET {path}", "Range: bytes=1000-\r\n")

    assert posted[0] == deleted[0] == 405
    assert head == (200, b"")
    assert ranged == (206, yolo_path.read_bytes()[1000:])


def test_cli_models_serve_prints_its_url_and_serves_the_folder(models_folder, tmp_path):
    env = {**os.environ, "STREAMER_REGISTRY_TOKEN": TOKEN}
    command = [sys.executable, "-m", "streamer", "models", "serve", str(models_folder), "--port", "0"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) as server:
        try:
            line = server.stdout.readline()
            url = line.split(" at ")[1].split()[0]
            document = anyio.run(HttpRegistryProvider(url, TOKEN).get_model, MODEL)
        finally:
            server.terminate()
            _, errors = server.communicate(timeout=10)

    assert line.startswith("serving 1 models from ") and "a bearer token is required" in line
    assert document is not None and document.model_id == MODEL
    assert TOKEN not in line + errors
