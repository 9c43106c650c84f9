"""fetch_package against a real HTTP server on loopback: retries, resume, checksums, locking, offline."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path

import msgspec
import pytest

from streamer.engine.cache import ModelCache
from streamer.engine.download import fetch_package
from streamer.engine.entities import FileSpec, ModelDocument
from streamer.errors import (
    AccessError,
    ChecksumMismatchError,
    DownloadError,
    ModelNotFoundError,
    OfflineError,
    UnsafePathError,
    UntrustedPackageError,
)
from tests.engine.registry_server import document_json, file_entry, payload, publish, running_registry, sha256

MODEL = "acme/yolov8n"
WEIGHTS = payload(200_000, seed=1)
LABELS = payload(3_000, seed=2)
FILES = {"weights/model.onnx": WEIGHTS, "labels.txt": LABELS}
WEIGHTS_PATH = f"/files/{MODEL}/weights/model.onnx"
FAST = {"backoff_s": 0.001, "progress": False}


@pytest.fixture
async def registry():
    async with running_registry() as server:
        yield server


@pytest.fixture
def cache(tmp_path: Path) -> ModelCache:
    return ModelCache(tmp_path / "cache")


async def fetch(document: ModelDocument, cache: ModelCache, **options) -> dict[str, Path]:
    return await fetch_package(document, document.packages[0], cache, **{**FAST, **options})


def assert_files_intact(paths: dict[str, Path], files: dict[str, bytes] = FILES) -> None:
    assert set(paths) == set(files)
    for name, data in files.items():
        assert paths[name].read_bytes() == data


async def test_files_land_in_the_cache_and_a_second_fetch_makes_no_request(registry, cache, caplog):
    document = publish(registry, MODEL, FILES)
    with caplog.at_level(logging.INFO, logger="streamer.engine"):
        paths = await fetch(document, cache)
    assert_files_intact(paths)
    package_dir = cache.package_dir(MODEL, "onnx-fp32")
    assert paths["weights/model.onnx"] == package_dir / "weights" / "model.onnx"
    assert cache.is_complete(MODEL, document.packages[0])
    assert cache.load_document(MODEL) == document
    assert not list(package_dir.rglob("*.part"))
    assert sum("downloaded" in record.getMessage() for record in caplog.records) == 2
    requests_before = registry.file_requests()
    assert await fetch(document, cache) == paths
    assert registry.file_requests() == requests_before == 2


async def test_server_errors_are_retried_until_the_file_comes(registry, cache):
    document = publish(registry, MODEL, FILES)
    registry.fail_next(3, WEIGHTS_PATH)
    assert_files_intact(await fetch(document, cache, retries=5))
    assert registry.requests[WEIGHTS_PATH] == 4


async def test_after_the_last_retry_the_error_names_the_file_and_url(registry, cache):
    document = publish(registry, MODEL, FILES)
    registry.fail_next(100, WEIGHTS_PATH)
    with pytest.raises(DownloadError) as caught:
        await fetch(document, cache, retries=2)
    message = str(caught.value)
    assert "'weights/model.onnx'" in message and registry.url + WEIGHTS_PATH in message
    assert "3 attempts" in message and "HTTP 500" in message
    assert registry.requests[WEIGHTS_PATH] == 3


async def test_client_errors_are_not_retried(registry, cache):
    document = publish(registry, MODEL, FILES)
    del registry.files[f"{MODEL}/labels.txt"]
    with pytest.raises(DownloadError, match="404"):
        await fetch(document, cache)
    assert registry.requests[f"/files/{MODEL}/labels.txt"] == 1
    registry.token = "needed"
    with pytest.raises(AccessError, match="403|401"):
        await fetch(document, cache)


async def test_a_cut_connection_resumes_with_a_range_request(registry, cache):
    document = publish(registry, MODEL, FILES)
    registry.cut_next(WEIGHTS_PATH, after_bytes=120_000)
    paths = await fetch(document, cache)
    assert sha256(paths["weights/model.onnx"].read_bytes()) == sha256(WEIGHTS)
    ranges = [seen.range for seen in registry.seen if seen.path == WEIGHTS_PATH]
    assert ranges == [None, "bytes=120000-"]


async def test_a_server_ignoring_range_makes_the_file_start_over(registry, cache):
    document = publish(registry, MODEL, FILES)
    registry.honour_range = False
    target = cache.file_path(MODEL, "onnx-fp32", "weights/model.onnx")
    target.parent.mkdir(parents=True)
    target.with_name("model.onnx.part").write_bytes(b"left over from another run")
    assert_files_intact(await fetch(document, cache))


async def test_a_stale_partial_download_that_does_not_verify_is_started_over(registry, cache):
    document = publish(registry, MODEL, FILES)
    target = cache.file_path(MODEL, "onnx-fp32", "weights/model.onnx")
    target.parent.mkdir(parents=True)
    target.with_name("model.onnx.part").write_bytes(payload(5_000, seed=7))
    assert_files_intact(await fetch(document, cache))
    ranges = [seen.range for seen in registry.seen if seen.path == WEIGHTS_PATH]
    assert ranges == ["bytes=5000-", None]


async def test_a_wrong_checksum_is_refused_then_the_fixed_file_is_fetched(registry, cache):
    document = publish(registry, MODEL, FILES)
    wrong = payload(len(WEIGHTS), seed=99)
    registry.files[f"{MODEL}/weights/model.onnx"] = wrong
    with pytest.raises(ChecksumMismatchError) as caught:
        await fetch(document, cache)
    assert sha256(wrong) in str(caught.value) and sha256(WEIGHTS) in str(caught.value)
    assert "'weights/model.onnx'" in str(caught.value)
    package_dir = cache.package_dir(MODEL, "onnx-fp32")
    assert not (package_dir / "weights" / "model.onnx").exists()
    assert not (package_dir / "weights" / "model.onnx.part").exists()
    assert not cache.is_complete(MODEL, document.packages[0])
    registry.files[f"{MODEL}/weights/model.onnx"] = WEIGHTS
    assert_files_intact(await fetch(document, cache))


async def test_a_corrupted_cached_file_is_fetched_again(registry, cache, caplog):
    document = publish(registry, MODEL, FILES)
    paths = await fetch(document, cache)
    corrupted = bytearray(WEIGHTS)
    corrupted[1234] ^= 0x01
    paths["weights/model.onnx"].write_bytes(bytes(corrupted))
    with caplog.at_level(logging.WARNING, logger="streamer.engine"):
        assert_files_intact(await fetch(document, cache))
    assert "failed verification" in caplog.text
    assert registry.requests[WEIGHTS_PATH] == 2
    assert registry.requests[f"/files/{MODEL}/labels.txt"] == 1


async def test_offline_with_an_empty_cache_says_how_to_pull(registry, cache):
    document = publish(registry, MODEL, FILES)
    with pytest.raises(OfflineError, match=f"streamer models pull {MODEL}"):
        await fetch(document, cache, offline=True)
    assert registry.file_requests() == 0


async def test_offline_with_a_complete_cache_needs_no_server(cache):
    async with running_registry() as server:
        document = publish(server, MODEL, FILES)
        await fetch(document, cache)
    assert_files_intact(await fetch(document, cache, offline=True))


async def test_files_without_a_checksum_need_allow_untrusted(registry, cache):
    document = publish(registry, MODEL, FILES, checksum=False)
    with pytest.raises(UntrustedPackageError, match="without a sha256: weights/model.onnx, labels.txt"):
        await fetch(document, cache)
    assert registry.file_requests() == 0
    assert_files_intact(await fetch(document, cache, allow_untrusted=True))


async def test_a_package_marked_untrusted_needs_allow_untrusted(registry, cache):
    document = publish(registry, MODEL, FILES, trusted=False)
    with pytest.raises(UntrustedPackageError, match="marked untrusted"):
        await fetch(document, cache)
    assert_files_intact(await fetch(document, cache, allow_untrusted=True))


@pytest.mark.parametrize("name", ["../evil", "/abs", "a/../../evil"])
async def test_names_escaping_the_package_folder_are_refused_before_any_request(registry, cache, name):
    entry = file_entry(name, LABELS, registry.file_url("x"))
    document = msgspec.convert(document_json(MODEL, [entry]), type=ModelDocument)
    with pytest.raises(UnsafePathError):
        await fetch(document, cache)
    assert registry.requests == {}


async def test_file_urls_are_verified_and_used_in_place(cache, tmp_path):
    local = tmp_path / "model.onnx"
    local.write_bytes(WEIGHTS)
    spec = FileSpec(name="model.onnx", url=local.as_uri(), size=len(WEIGHTS), sha256=sha256(WEIGHTS))
    document = msgspec.convert(document_json(MODEL, [msgspec.to_builtins(spec)]), type=ModelDocument)
    assert await fetch(document, cache) == {"model.onnx": local}
    assert not cache.models_dir.exists()
    local.write_bytes(LABELS)
    with pytest.raises(ChecksumMismatchError, match=sha256(WEIGHTS)):
        await fetch(document, cache)
    local.unlink()
    with pytest.raises(ModelNotFoundError):
        await fetch(document, cache)


async def test_two_tasks_pulling_one_package_download_each_file_once(registry, cache):
    document = publish(registry, MODEL, FILES)
    registry.delay_s = 0.1
    first, second = await asyncio.gather(fetch(document, cache), fetch(document, cache))
    assert first == second
    assert_files_intact(first)
    assert registry.file_requests() == 2


PULL_SCRIPT = """
import functools, json, sys
from pathlib import Path
import anyio, msgspec
from streamer.engine.cache import ModelCache
from streamer.engine.download import fetch_package
from streamer.engine.entities import ModelDocument

document = msgspec.json.decode(Path(sys.argv[1]).read_bytes(), type=ModelDocument)
fetch = functools.partial(fetch_package, backoff_s=0.001, progress=False)
print("ready", flush=True)
sys.stdin.readline()
paths = anyio.run(fetch, document, document.packages[0], ModelCache(Path(sys.argv[2])))
print(json.dumps({name: str(path) for name, path in paths.items()}), flush=True)
"""


async def test_two_processes_pulling_one_package_download_each_file_once(registry, cache, tmp_path):
    document = publish(registry, MODEL, FILES)
    registry.delay_s = 0.2  # the first process still holds the lock when the second asks for it
    script, document_file = tmp_path / "pull.py", tmp_path / "document.json"
    script.write_text(PULL_SCRIPT)
    document_file.write_bytes(msgspec.json.encode(document))
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            str(document_file),
            str(cache.root),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(2)
    ]
    for process in processes:
        assert await asyncio.wait_for(process.stdout.readline(), 30) == b"ready\n"
    outputs = await asyncio.wait_for(asyncio.gather(*(process.communicate(b"go\n") for process in processes)), 30)
    assert [process.returncode for process in processes] == [0, 0]
    results = [{name: Path(path) for name, path in json.loads(stdout).items()} for stdout, _ in outputs]
    assert results[0] == results[1]
    assert_files_intact(results[0])
    assert registry.file_requests() == 2


async def test_progress_is_drawn_on_stderr_only_when_asked(registry, cache, capsys):
    document = publish(registry, MODEL, FILES)
    await fetch(document, cache, progress=False)
    assert capsys.readouterr().err == ""
    await fetch(document, ModelCache(cache.root / "other"), progress=True)
    err = capsys.readouterr().err
    assert err.startswith("\r") and "0.2/0.2 MB" in err and err.endswith("\n")
