"""ModelCache: layout, safe names, documents, the completion marker, verification and the lock."""

from __future__ import annotations

from pathlib import Path

import anyio
import msgspec
import pytest

from streamer.engine.cache import ModelCache, default_cache_root, safe_file_path, safe_folder_name
from streamer.engine.entities import FileSpec, ModelDocument, ModelPackage
from streamer.errors import PackageError, UnsafePathError
from tests.engine.registry_server import payload, sha256

DATA = payload(1000)


def make_document(model_id: str = "acme/yolov8n", data: bytes = DATA) -> ModelDocument:
    package = ModelPackage(
        package_id="onnx-fp32",
        backend="onnxruntime",
        format="onnx",
        files=[
            FileSpec(name="weights/model.onnx", url="https://example.com/m.onnx", size=len(data), sha256=sha256(data))
        ],
    )
    return ModelDocument(model_id=model_id, task="object-detection", architecture="yolov8", packages=[package])


def put_files(cache: ModelCache, document: ModelDocument, data: bytes = DATA) -> Path:
    package = document.packages[0]
    path = cache.file_path(document.model_id, package.package_id, package.files[0].name)
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    return path


def test_root_comes_from_the_environment_else_the_home_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("STREAMER_CACHE_DIR", str(tmp_path))
    assert ModelCache().root == tmp_path
    monkeypatch.delenv("STREAMER_CACHE_DIR")
    assert default_cache_root() == Path.home() / ".cache" / "streamer"


def test_layout_puts_packages_under_a_safe_model_folder(tmp_path):
    cache = ModelCache(tmp_path)
    folder = cache.package_dir("acme/yolov8n", "onnx-fp32")
    assert folder.parent.parent == tmp_path / "models"
    assert folder.name == "onnx-fp32"
    assert "/" not in folder.parent.name and folder.parent.name.startswith("acme--yolov8n-")


def test_safe_folder_names_keep_plain_ids_and_never_collide_or_escape():
    assert safe_folder_name("yolov8n-640") == "yolov8n-640"
    assert safe_folder_name("a/b") != safe_folder_name("a--b")
    for model_id in ("..", ".", "../../etc", "/abs"):
        name = safe_folder_name(model_id)
        assert name not in ("", ".", "..") and "/" not in name


@pytest.mark.parametrize("name", ["../evil", "/abs/file", "a/../../b", "a//b", "./a", "a\\b", ".complete", "x.part"])
def test_unsafe_file_names_are_refused(tmp_path, name):
    with pytest.raises(UnsafePathError, match="refused"):
        safe_file_path(tmp_path, name)


def test_a_symbolic_link_out_of_the_package_folder_is_refused(tmp_path):
    package_dir = tmp_path / "package"
    package_dir.mkdir()
    (tmp_path / "outside").mkdir()
    (package_dir / "link").symlink_to(tmp_path / "outside")
    with pytest.raises(UnsafePathError, match="symbolic link"):
        safe_file_path(package_dir, "link/model.onnx")
    assert safe_file_path(package_dir, "sub/model.onnx") == package_dir / "sub" / "model.onnx"


def test_unsafe_package_ids_are_refused(tmp_path):
    with pytest.raises(UnsafePathError):
        ModelCache(tmp_path).package_dir("m", "../x")


def test_a_document_round_trips_and_a_missing_one_is_none(tmp_path):
    cache = ModelCache(tmp_path)
    document = make_document()
    assert cache.load_document(document.model_id) is None
    cache.save_document(document)
    assert cache.load_document(document.model_id) == document
    assert (cache.model_dir(document.model_id) / "model.json").is_file()


def test_a_corrupt_cached_document_is_a_package_error(tmp_path):
    cache = ModelCache(tmp_path)
    path = cache.model_dir("m") / "model.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"model_id": "m", "task": 3}')
    with pytest.raises(PackageError, match=r"\$\.task"):
        cache.load_document("m")


def test_complete_needs_the_marker_and_every_file_at_its_size(tmp_path):
    cache = ModelCache(tmp_path)
    document = make_document()
    package = document.packages[0]
    path = put_files(cache, document)
    assert not cache.is_complete(document.model_id, package)
    cache.mark_complete(document.model_id, package)
    assert cache.is_complete(document.model_id, package)
    path.write_bytes(DATA[:-1])
    assert not cache.is_complete(document.model_id, package)


def test_a_marker_for_other_checksums_is_not_complete(tmp_path):
    cache = ModelCache(tmp_path)
    document = make_document()
    put_files(cache, document)
    cache.mark_complete(document.model_id, document.packages[0])
    changed = msgspec.structs.replace(document.packages[0].files[0], sha256="0" * 64)
    package = msgspec.structs.replace(document.packages[0], files=[changed])
    assert not cache.is_complete(document.model_id, package)


def test_verify_rehashes_and_finds_a_flipped_byte(tmp_path):
    cache = ModelCache(tmp_path)
    document = make_document()
    package = document.packages[0]
    path = put_files(cache, document)
    assert cache.verify(document.model_id, package) == []
    corrupted = bytearray(DATA)
    corrupted[500] ^= 0xFF
    path.write_bytes(bytes(corrupted))
    assert cache.verify(document.model_id, package) == package.files
    cache.discard(document.model_id, package, package.files)
    assert not path.exists()


def test_cached_packages_lists_complete_packages_only(tmp_path):
    cache = ModelCache(tmp_path)
    complete, partial = make_document("acme/one"), make_document("two")
    for document in (complete, partial):
        put_files(cache, document)
        cache.save_document(document)
    cache.mark_complete(complete.model_id, complete.packages[0])
    listed = cache.cached_packages()
    assert [(document.model_id, package.package_id) for document, package, _ in listed] == [("acme/one", "onnx-fp32")]
    assert listed[0][2] == cache.package_dir("acme/one", "onnx-fp32")


async def test_the_lock_excludes_a_second_holder_until_released(tmp_path):
    cache = ModelCache(tmp_path)
    events: list[str] = []

    async def hold(name: str) -> None:
        async with cache.lock("m", "p"):
            events.append(f"{name} in")
            await anyio.sleep(0.1)
            events.append(f"{name} out")

    async with anyio.create_task_group() as group:
        group.start_soon(hold, "first")
        await anyio.sleep(0.02)
        group.start_soon(hold, "second")
    assert events == ["first in", "first out", "second in", "second out"]
    assert (cache.model_dir("m") / "p.lock").exists()


async def test_waiting_for_the_lock_can_be_cancelled(tmp_path):
    cache = ModelCache(tmp_path)
    async with cache.lock("m", "p"):
        with anyio.move_on_after(0.1) as scope:
            async with cache.lock("m", "p"):
                pytest.fail("the lock was taken twice")
        assert scope.cancelled_caught
