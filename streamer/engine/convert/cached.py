"""The cache: each conversion made once, under a lock, into a local model package of its own.

    <cache root>/converted/<safe model id>/<key>/model.json             a local model folder (providers/local.py)
    <cache root>/converted/<safe model id>/<key>/<package id>/model.*   the network, `metadata.json` inside it
    <cache root>/converted/<safe model id>/<key>.lock                   flock'd by whoever converts it

`key` digests the ONNX file's sha256, the format, the architecture and the torch, onnx2torch and
converter versions: the same inputs are never converted twice; a new torch or onnx2torch converts again.
A conversion is built in a temporary folder and renamed into place whole, so a reader never sees half.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import msgspec

from ...errors import MissingDependencyError
from ..cache import atomic_write, file_sha256, lock_file, safe_folder_name
from ..entities import FileSpec, ModelDocument, ModelPackage, RuntimeRequirements
from ..providers.local import MANIFEST, read_model_folder
from .importer import INSTALL_HINT, WHAT
from .saving import Converted, convert_file

FORMATS: dict[str, str] = {"torchscript": "model.torchscript", "torch-export": "model.pt2"}
CONVERTER_REVISION = 1  # bump when a change here makes earlier conversions wrong


def conversion_key(sha256: str, format: str, architecture: str, versions: dict[str, str]) -> str:
    """What makes two conversions the same, as a short digest (the cache folder's name)."""
    parts = [sha256, format, architecture, versions["torch"], versions["onnx2torch"], str(CONVERTER_REVISION)]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:20]


def converter_versions() -> dict[str, str]:
    """The installed torch and onnx2torch versions (part of every conversion's cache key)."""
    versions = {}
    for name, hint in (("torch", "pip install 'streamer[torch]'"), ("onnx2torch", INSTALL_HINT)):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError as exc:
            raise MissingDependencyError(f"{WHAT} needs `{name}`, which is not installed: {hint}") from exc
    return versions


def cached_conversion(source: Path, format: str, document: ModelDocument, cache_root: Path) -> Path:
    """The cached conversion's folder, converting under the lock only when it is missing or broken."""
    versions = converter_versions()
    sha256 = file_sha256(source)
    key = conversion_key(sha256, format, document.architecture, versions)
    folder = cache_root / "converted" / safe_folder_name(document.model_id) / key
    if _is_complete(folder):
        return folder
    with _locked(folder.with_name(key + ".lock")):
        if not _is_complete(folder):  # another process may have converted it while we waited
            facts = {"onnx_file": source.name, "onnx_sha256": sha256, "key": key, **versions}
            _convert_into(folder, source, format, document, facts)
    return folder


def _is_complete(folder: Path) -> bool:
    """The manifest is written last, inside a folder renamed into place: its files must all be there."""
    return (folder / MANIFEST).is_file() and files_intact(folder)


def files_intact(folder: Path) -> bool:
    """Every file the folder's manifest lists is there at its declared size."""
    document = read_model_folder(folder)
    return all(
        _size(folder / package.package_id / spec.name) == spec.size
        for package in document.packages
        for spec in package.files
    )


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold `path` flock'd exclusively (across processes) for the block."""
    with lock_file(path) as descriptor:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield


def _convert_into(folder: Path, source: Path, format: str, document: ModelDocument, facts: dict[str, str]) -> None:
    """Convert into a temporary sibling folder, then rename it to `folder` whole."""
    building = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
    try:
        target = building / f"{format}-fp32" / FORMATS[format]
        target.parent.mkdir(parents=True)
        converted = convert_file(source, target, format=format, document=document)
        link_or_copy(target, building / f"{format}-fp16" / FORMATS[format])
        manifest = document_for_conversion(document, format, target, converted, facts)
        atomic_write(building / MANIFEST, msgspec.json.format(msgspec.json.encode(manifest), indent=2))
        shutil.rmtree(folder, ignore_errors=True)  # a broken earlier conversion
        os.replace(building, folder)
    finally:
        shutil.rmtree(building, ignore_errors=True)


def link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:  # a file system without hard links
        shutil.copyfile(source, target)


def document_for_conversion(
    source: ModelDocument, format: str, file: Path, converted: Converted, facts: dict[str, str]
) -> ModelDocument:
    """The converted model's manifest: the source's description and two torch packages of one file, fp32
    and fp16 (the backend halves the module as it loads it; negotiation picks it on GPUs, or when asked)."""
    spec = FileSpec(name=file.name, size=file.stat().st_size, sha256=file_sha256(file))
    packages = [
        ModelPackage(
            package_id=f"{format}-{quantization}",
            backend="torch",
            format=format,  # type: ignore[arg-type]
            quantization=quantization,  # type: ignore[arg-type]
            batch=converted.batch,
            requirements=RuntimeRequirements(torch_version=_major_minor(facts["torch"])),
            files=[spec],
            extra={"converted_from": facts},
        )
        for quantization in ("fp32", "fp16")
    ]
    names, size = _names_and_size(source, converted.metadata)
    return msgspec.structs.replace(source, packages=packages, class_names=names, input_size=size)


def _names_and_size(document: ModelDocument, metadata: dict[str, str]) -> tuple[list[str], tuple[int, int] | None]:
    """The document's class names and input size, else an Ultralytics export's own."""
    from ..models.yolo import is_ultralytics, read_metadata

    names, size = list(document.class_names), document.input_size
    if document.architecture == "yolo" and is_ultralytics(metadata) and not (names and size):
        file_names, file_size = read_metadata(metadata, f"model {document.model_id!r}")
        names, size = names or list(file_names), size or file_size
    return names, size


def _major_minor(version: str) -> str:
    return ".".join(version.split("+")[0].split(".")[:2])
