"""GET /status names the model package a daemon loaded and each of its files' sha256, so a fleet's
nodes can be checked to run the very same package."""

from __future__ import annotations

from streamer.engine import AutoModel
from streamer.engine.providers.embedded import EMBEDDED
from streamer.engine.serve import serving_models
from tests.engine.registry_server import sha256
from tests.engine.test_serve import MODEL, models_folder  # noqa: F401 (a fixture)
from tests.service.helpers import get_json, lavfi, served


async def test_status_when_the_model_came_from_a_models_registry_shows_its_package_and_file_checksums(
    models_folder, yolo_path, tmp_path, monkeypatch  # noqa: F811
):
    monkeypatch.setenv("STREAMER_MODELS_DIR", str(tmp_path / "no-local-models"))
    async with serving_models(models_folder) as url:
        model = await AutoModel.load(MODEL, registry_url=url, cache_dir=str(tmp_path / "cache"))
    async with served(model, lavfi("cam")) as (_, _, http):
        _, status = await get_json(http, "/status")

    checksum = sha256(yolo_path.read_bytes())
    assert (status["model"]["id"], status["model"]["package"], status["model"]["sha256"]) == (MODEL, "onnx-fp32", checksum)
    assert status["model"]["files"] == {"model.onnx": checksum}


async def test_status_when_the_model_ships_in_a_wheel_shows_the_pinned_checksum(centerface):
    async with served(centerface, lavfi("cam")) as (_, _, http):
        _, status = await get_json(http, "/status")

    assert status["model"]["files"] == {"centerface.onnx": EMBEDDED["centerface"].sha256}
    assert status["model"]["package"] == EMBEDDED["centerface"].package_id
