"""The model cache on disk: a folder per model, a folder per package, a marker once a package is whole.

    <root>/models/<safe model id>/model.json                the ModelDocument, saved when a package is pulled
    <root>/models/<safe model id>/<package_id>/<file name>  the package's files (downloads end in `.part`)
    <root>/models/<safe model id>/<package_id>/.complete    {"files": {name: sha256}}, once all are verified
    <root>/models/<safe model id>/<package_id>.lock         flock'd by whoever is fetching the package

Files with a `file://` URL are used in place and never enter the cache.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread
import msgspec

from ..errors import PackageError, UnsafePathError
from .entities import FileSpec, ModelDocument, ModelPackage

logger = logging.getLogger("streamer.engine")

DOCUMENT = "model.json"
MARKER = ".complete"
PART_SUFFIX = ".part"
LOCK_POLL_S = 0.05
HASH_CHUNK_BYTES = 1024 * 1024
PACKAGE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class Marker(msgspec.Struct):
    """The `.complete` file: each cached file's declared sha256 (None for an untrusted file)."""

    files: dict[str, str | None]


def default_cache_root() -> Path:
    """`$STREAMER_CACHE_DIR`, else `~/.cache/streamer`."""
    configured = os.environ.get("STREAMER_CACHE_DIR")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "streamer"


def safe_folder_name(model_id: str) -> str:
    """A folder name for a model id: the id itself when safe, else a readable slug plus a short hash."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "--", model_id).strip(".-")
    if slug == model_id:
        return slug
    digest = hashlib.sha256(model_id.encode()).hexdigest()[:8]
    return f"{slug or 'model'}-{digest}"


def safe_file_path(package_dir: Path, name: str) -> Path:
    """`package_dir / name`, or UnsafePathError when the name could land anywhere else."""
    reason = _unsafe_name_reason(name)
    if reason is None and not (package_dir / name).resolve().is_relative_to(package_dir.resolve()):
        reason = "it resolves (through a symbolic link) outside the folder"
    if reason is not None:
        raise UnsafePathError(f"file name {name!r} is refused: {reason} (package folder {package_dir})")
    return package_dir / name


def _unsafe_name_reason(name: str) -> str | None:
    if name.startswith("/"):
        return "it is an absolute path"
    if "\\" in name or "\0" in name:
        return "it contains a backslash or a NUL character"
    parts = name.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return "it has an empty, '.' or '..' component"
    if parts[-1] == MARKER or parts[-1].endswith(PART_SUFFIX):
        return f"{MARKER!r} and names ending in {PART_SUFFIX!r} are reserved by the cache"
    return None


def is_cached_file(spec: FileSpec) -> bool:
    """Whether the file lives in the cache (fetched over http(s)) rather than in place (`file://`)."""
    return not (spec.url or "").lower().startswith("file:")


def part_path(path: Path) -> Path:
    """Where a file is downloaded to before its checksum is verified."""
    return path.with_name(path.name + PART_SUFFIX)


def hash_file(path: Path) -> Any:
    """A sha256 hasher fed with the file's bytes (so a resumed download can go on feeding it)."""
    hasher = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(HASH_CHUNK_BYTES):
            hasher.update(chunk)
    return hasher


def file_sha256(path: Path) -> str:
    return str(hash_file(path).hexdigest())


def atomic_write(path: Path, data: bytes) -> None:
    """Write through a temporary file and `os.replace`, so readers see the old or the new file whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)


@contextlib.contextmanager
def lock_file(path: Path) -> Iterator[int]:
    """A lock file's descriptor, open (and created, with its folder) for the block; closing this only
    descriptor at the end releases any flock taken on it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        yield descriptor
    finally:
        os.close(descriptor)


def _wait_for_flock(descriptor: int) -> None:
    """Take an exclusive flock, polling so that cancelling the waiting task stops the wait."""
    while True:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            anyio.from_thread.check_cancelled()
            time.sleep(LOCK_POLL_S)


class ModelCache:
    """Models pulled from registries, one folder per package; see the module docstring for the layout."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_root()

    def __repr__(self) -> str:
        return f"ModelCache({str(self.root)!r})"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    def model_dir(self, model_id: str) -> Path:
        return self.models_dir / safe_folder_name(model_id)

    def package_dir(self, model_id: str, package_id: str) -> Path:
        if not PACKAGE_ID.fullmatch(package_id):
            raise UnsafePathError(f"model {model_id!r}: package id {package_id!r} is not a safe folder name")
        return self.model_dir(model_id) / package_id

    def file_path(self, model_id: str, package_id: str, name: str) -> Path:
        return safe_file_path(self.package_dir(model_id, package_id), name)

    @contextlib.asynccontextmanager
    async def lock(self, model_id: str, package_id: str) -> AsyncIterator[None]:
        """Hold the package's lock file exclusively (across processes) for the duration of the block."""
        package_dir = self.package_dir(model_id, package_id)
        with lock_file(package_dir.with_name(package_dir.name + ".lock")) as descriptor:
            await anyio.to_thread.run_sync(_wait_for_flock, descriptor)
            yield

    def save_document(self, document: ModelDocument) -> None:
        data = msgspec.json.format(msgspec.json.encode(document), indent=2)
        atomic_write(self.model_dir(document.model_id) / DOCUMENT, data)

    def load_document(self, model_id: str) -> ModelDocument | None:
        """The document saved when the model was last pulled, or None if it never was."""
        path = self.model_dir(model_id) / DOCUMENT
        return _read_document(path) if path.exists() else None

    def cached_packages(self) -> list[tuple[ModelDocument, ModelPackage, Path]]:
        """Every complete package in the cache, with its model's document and its folder."""
        documents = [_read_listed_document(path) for path in sorted(self.models_dir.glob(f"*/{DOCUMENT}"))]
        return [
            (document, package, self.package_dir(document.model_id, package.package_id))
            for document in documents
            if document is not None
            for package in document.packages
            if self.is_complete(document.model_id, package)
        ]

    def is_complete(self, model_id: str, package: ModelPackage) -> bool:
        """The marker lists exactly the package's files and checksums, and each file has its size."""
        package_dir = self.package_dir(model_id, package.package_id)
        if _read_marker(package_dir / MARKER) != _expected_marker(package):
            return False
        return all(_has_declared_size(package_dir / spec.name, spec) for spec in _cached_files(package))

    def verify(self, model_id: str, package: ModelPackage) -> list[FileSpec]:
        """The cached files that are missing or whose size or sha256 is wrong (re-hashes: run in a thread)."""
        package_dir = self.package_dir(model_id, package.package_id)
        return [spec for spec in _cached_files(package) if not _is_intact(package_dir / spec.name, spec)]

    def mark_complete(self, model_id: str, package: ModelPackage) -> None:
        marker = msgspec.json.encode(_expected_marker(package))
        atomic_write(self.package_dir(model_id, package.package_id) / MARKER, marker)

    def discard(self, model_id: str, package: ModelPackage, files: list[FileSpec]) -> None:
        """Delete these files (their partial downloads are kept, to resume) and the package's marker."""
        package_dir = self.package_dir(model_id, package.package_id)
        (package_dir / MARKER).unlink(missing_ok=True)
        for spec in files:
            safe_file_path(package_dir, spec.name).unlink(missing_ok=True)


def _cached_files(package: ModelPackage) -> list[FileSpec]:
    return [spec for spec in package.files if is_cached_file(spec)]


def _expected_marker(package: ModelPackage) -> Marker:
    return Marker(files={spec.name: spec.sha256 for spec in _cached_files(package)})


def _read_marker(path: Path) -> Marker | None:
    """The marker, or None when it is missing or unreadable (either way: not complete)."""
    try:
        return msgspec.json.decode(path.read_bytes(), type=Marker)
    except (OSError, msgspec.DecodeError):
        return None


def _has_declared_size(path: Path, spec: FileSpec) -> bool:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return False
    return spec.size is None or size == spec.size


def _is_intact(path: Path, spec: FileSpec) -> bool:
    if not _has_declared_size(path, spec):
        return False
    return spec.sha256 is None or file_sha256(path) == spec.sha256


def _read_document(path: Path) -> ModelDocument:
    try:
        return msgspec.json.decode(path.read_bytes(), type=ModelDocument)
    except msgspec.DecodeError as exc:
        raise PackageError(f"cached model document {path} is not valid ({exc}); delete it and pull again") from exc


def _read_listed_document(path: Path) -> ModelDocument | None:
    """A document for the listing: an unreadable one is reported in the log and skipped."""
    try:
        return _read_document(path)
    except PackageError as exc:
        logger.warning("%s", exc)
        return None
