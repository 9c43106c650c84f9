"""HttpRegistryProvider against a real registry on loopback: documents, errors, and the token kept secret."""

from __future__ import annotations

import logging

import pytest

from streamer.engine.cache import ModelCache
from streamer.engine.download import fetch_package
from streamer.engine.providers.http import HttpRegistryProvider
from streamer.errors import AccessError, DownloadError, PackageError, ParameterError, UnsafePathError
from tests.engine.registry_server import document_json, file_entry, payload, running_registry, sha256

TOKEN = "tok-3f9a1c77e2b4d5"
MODEL = "acme/detectors/yolov8n"
WEIGHTS = payload(50_000, seed=3)


@pytest.fixture
async def registry():
    async with running_registry() as server:
        yield server


def provider_for(server, token: str | None = None) -> HttpRegistryProvider:
    return HttpRegistryProvider(server.url, token, backoff_s=0.001)


def serve_model(server, file_url: str = "../../../files/weights.onnx") -> None:
    """A document for MODEL whose one file URL is relative to the document (or absolute, if given so)."""
    server.files["weights.onnx"] = WEIGHTS
    server.documents[MODEL] = document_json(MODEL, [file_entry("model.onnx", WEIGHTS, file_url)])


async def test_a_document_is_decoded_with_its_metadata_and_packages(registry):
    serve_model(registry)
    document = await provider_for(registry).get_model(MODEL)
    assert document is not None
    assert (document.model_id, document.task, document.architecture) == (MODEL, "object-detection", "yolov8")
    assert document.input_size == (640, 640) and document.class_names == ["person", "car"]
    package = document.packages[0]
    assert (package.backend, package.format, package.requirements.onnx_opset) == ("onnxruntime", "onnx", 17)
    assert (package.batch.dynamic, package.batch.min, package.batch.max) == (True, 1, 8)
    assert registry.requests == {f"/models/{MODEL}.json": 1}


async def test_relative_file_urls_are_resolved_against_the_document_url(registry):
    serve_model(registry)
    document = await provider_for(registry).get_model(MODEL)
    assert document is not None
    assert document.packages[0].files[0].url == f"{registry.url}/files/weights.onnx"


async def test_model_id_segments_are_quoted(registry):
    registry.documents["odd id/v 1"] = document_json("odd id/v 1", [])
    document = await provider_for(registry).get_model("odd id/v 1")
    assert document is not None and document.model_id == "odd id/v 1"
    with pytest.raises(ParameterError):
        provider_for(registry).document_url("../secrets")


async def test_an_unknown_model_is_none(registry):
    assert await provider_for(registry).get_model("nobody") is None


async def test_server_errors_are_retried_then_reported(registry):
    serve_model(registry)
    registry.fail_next(2)
    assert await provider_for(registry).get_model(MODEL) is not None
    registry.fail_next(100)
    with pytest.raises(DownloadError, match=r"4 attempts.*HTTP 500"):
        await provider_for(registry).get_model(MODEL)


async def test_a_bad_document_names_the_model_and_the_path(registry):
    bad = document_json(MODEL, [])
    bad["packages"][0]["backend"] = "tensorflow"
    registry.documents[MODEL] = bad
    with pytest.raises(PackageError, match=r"acme/detectors/yolov8n.*\$\.packages\[0\]\.backend"):
        await provider_for(registry).get_model(MODEL)


async def test_settings_come_from_the_environment(monkeypatch, registry):
    monkeypatch.setenv("STREAMER_REGISTRY_URL", registry.url + "/")
    monkeypatch.setenv("STREAMER_REGISTRY_TOKEN", TOKEN)
    registry.token = TOKEN
    serve_model(registry)
    provider = HttpRegistryProvider()
    assert provider.base_url == registry.url
    assert await provider.get_model(MODEL) is not None


def test_a_missing_or_odd_registry_url_is_a_parameter_error(monkeypatch):
    monkeypatch.delenv("STREAMER_REGISTRY_URL", raising=False)
    with pytest.raises(ParameterError, match="STREAMER_REGISTRY_URL"):
        HttpRegistryProvider()
    with pytest.raises(ParameterError, match="http"):
        HttpRegistryProvider("ftp://example.com")


async def test_a_missing_or_refused_token_is_an_access_error_naming_the_variable(registry):
    registry.token = TOKEN
    serve_model(registry)
    with pytest.raises(AccessError, match="wants a token: set STREAMER_REGISTRY_TOKEN"):
        await provider_for(registry).get_model(MODEL)
    with pytest.raises(AccessError, match="refused the token: check STREAMER_REGISTRY_TOKEN"):
        await provider_for(registry, "wrong-token").get_model(MODEL)
    assert await provider_for(registry, TOKEN).get_model(MODEL) is not None


def test_headers_go_only_to_the_registry_origin():
    provider = HttpRegistryProvider("https://models.example.com/api", TOKEN)
    assert provider.headers_for("https://models.example.com/files/a.onnx") == {"Authorization": f"Bearer {TOKEN}"}
    assert provider.headers_for("https://models.example.com:443/x") != {}
    for url in ("https://cdn.example.com/a", "http://models.example.com/a", "https://models.example.com:8443/a"):
        assert provider.headers_for(url) == {}
    assert HttpRegistryProvider("https://models.example.com").headers_for("https://models.example.com/a") == {}


async def test_the_token_reaches_the_registry_but_not_a_file_host_elsewhere(registry, tmp_path):
    registry.token = TOKEN
    async with running_registry() as file_host:
        file_host.files["weights.onnx"] = WEIGHTS
        serve_model(registry, file_url=file_host.file_url("weights.onnx"))
        provider = provider_for(registry, TOKEN)
        document = await provider.get_model(MODEL)
        assert document is not None
        paths = await fetch_package(
            document, document.packages[0], ModelCache(tmp_path), headers=provider.headers_for, progress=False
        )
    assert sha256(paths["model.onnx"].read_bytes()) == sha256(WEIGHTS)
    assert [seen.authorization for seen in registry.seen] == [f"Bearer {TOKEN}"]
    assert [seen.authorization for seen in file_host.seen] == [None]


async def test_the_token_never_appears_in_logs_errors_or_repr(registry, tmp_path, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    registry.token = TOKEN
    serve_model(registry, file_url=f"../../../files/weights.onnx?token={TOKEN}")
    provider = provider_for(registry, TOKEN)
    document = await provider.get_model(MODEL)
    assert document is not None
    texts = [repr(provider)]
    registry.fail_next(100)
    for attempt in (
        provider_for(registry, TOKEN).get_model(MODEL),
        provider_for(registry, "x" + TOKEN).get_model(MODEL),
        fetch_package(
            document,
            document.packages[0],
            ModelCache(tmp_path),
            headers=provider.headers_for,
            retries=2,
            backoff_s=0.001,
            progress=True,
        ),
    ):
        with pytest.raises((AccessError, DownloadError)) as caught:
            await attempt
        texts += [str(caught.value), repr(caught.value), repr(caught.value.__cause__)]
    registry.failures.clear()
    await fetch_package(
        document, document.packages[0], ModelCache(tmp_path), headers=provider.headers_for, progress=True
    )
    captured = capfd.readouterr()
    texts += [caplog.text, captured.out, captured.err]
    texts += [str(record.args) for record in caplog.records]
    assert "failed after 3 attempts" in "".join(texts) and "MB" in captured.err
    assert not [text for text in texts if TOKEN in text]


@pytest.mark.parametrize("file_url", ["file:///etc/passwd", "file:/etc/passwd", "ftp://127.0.0.1/weights.onnx"])
async def test_get_model_when_the_document_names_a_url_that_is_not_http(registry, file_url):
    serve_model(registry, file_url=file_url)

    with pytest.raises(UnsafePathError) as refused:
        await provider_for(registry).get_model(MODEL)

    assert MODEL in str(refused.value) and "only http(s)" in str(refused.value)
    assert "passwd" in str(refused.value) or "ftp://" in str(refused.value)
