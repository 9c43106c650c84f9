"""LocalDirectoryProvider: a models folder names files inside itself, or http(s) URLs, nothing else."""

from __future__ import annotations

import json

import pytest

from streamer.engine.providers.local import LocalDirectoryProvider
from streamer.errors import UnsafePathError
from tests.engine.registry_server import document_json, file_entry, payload

WEIGHTS = payload(1_000, seed=5)


def write_model(root, model_id: str, url: str | None, name: str = "model.onnx") -> None:
    folder = root / model_id
    (folder / "onnx-fp32").mkdir(parents=True)
    (folder / "onnx-fp32" / "model.onnx").write_bytes(WEIGHTS)
    (root / "outside.onnx").write_bytes(WEIGHTS)
    (folder / "model.json").write_text(json.dumps(document_json(model_id, [file_entry(name, WEIGHTS, url)])))


async def test_get_model_when_the_manifest_names_a_file_of_its_folder(tmp_path):
    write_model(tmp_path, "faces", (tmp_path / "faces" / "onnx-fp32" / "model.onnx").as_uri())

    document = await LocalDirectoryProvider(tmp_path).get_model("faces")

    assert document is not None and document.packages[0].files[0].url.endswith("/faces/onnx-fp32/model.onnx")


async def test_get_model_when_the_root_is_the_relative_default_gives_its_files_absolute_urls(tmp_path, monkeypatch):
    write_model(tmp_path / "models", "faces", None)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STREAMER_MODELS_DIR", raising=False)

    document = await LocalDirectoryProvider().get_model("faces")

    assert document is not None
    assert document.packages[0].files[0].url == (tmp_path / "models" / "faces" / "onnx-fp32" / "model.onnx").as_uri()


async def test_get_model_when_a_file_name_climbs_out_of_the_folder(tmp_path):
    write_model(tmp_path, "faces", None, name="../../outside.onnx")

    with pytest.raises(UnsafePathError, match="outside.onnx"):
        await LocalDirectoryProvider(tmp_path).get_model("faces")


@pytest.mark.parametrize("url", ["file:///etc/passwd", "{root}/faces/../outside.onnx", "ftp://127.0.0.1/x.onnx"])
async def test_get_model_when_a_url_points_outside_the_folder(tmp_path, url):
    if url.startswith("{root}"):
        url = "file://" + url.format(root=tmp_path)
    write_model(tmp_path, "faces", url)

    with pytest.raises(UnsafePathError) as refused:
        await LocalDirectoryProvider(tmp_path).get_model("faces")

    assert "model.json" in str(refused.value) and url in str(refused.value)
