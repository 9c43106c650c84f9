"""Fetch a package's files into the cache: concurrent, resumable, verified, safe for two processes at once.

`fetch_package` checks the manifest first (file names, checksums, URLs), then, under the package's
lock, re-verifies what is cached and downloads only what is missing or wrong. Each file streams
into `<name>.part`, hashed as it arrives, resumed with an HTTP Range request after a dropped
connection, and renamed into place only once its sha256 matches.

Progress: a package's download reports to a `DownloadProgress` (bytes done per file, against the
total). By default that is the one-line `ProgressBar` on a terminal; an application shows its own
by making one per package, e.g. the CLI's display:

    with download_progress(lambda label, total: MyProgress(label, total)):   # None: show nothing
        await fetch_package(...)
"""

from __future__ import annotations

import hashlib
import logging
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Self, TextIO
from urllib.parse import urlsplit
from urllib.request import url2pathname

import anyio
import anyio.to_thread

from ..errors import (
    AccessError,
    ChecksumMismatchError,
    DownloadError,
    ModelNotFoundError,
    OfflineError,
    PackageError,
    UntrustedPackageError,
)
from ..groups import leaves
from ..redact import redact_url
from .cache import ModelCache, file_sha256, hash_file, is_cached_file, part_path, safe_file_path
from .entities import FileSpec, LoadOptions, ModelDocument, ModelPackage
from .providers import registry_provider
from .retry import TransientError, retrying

if TYPE_CHECKING:  # aiohttp is imported by the first download, not by a load of files already here
    import aiohttp

logger = logging.getLogger("streamer.engine")

Headers = Mapping[str, str] | Callable[[str], Mapping[str, str]] | None
CHUNK_BYTES = 256 * 1024
TIMEOUT_S = {"total": None, "sock_connect": 30, "sock_read": 60}  # aiohttp.ClientTimeout's fields
RETRY_STATUSES = {408, 429}


class DownloadProgress(Protocol, AbstractContextManager[Any]):
    """Told the bytes each file of one package has so far (entered before the first, left after the last)."""

    def update(self, name: str, done: int) -> None: ...


ProgressFactory = Callable[[str, "int | None"], DownloadProgress]  # (label, total bytes or None) -> progress
_UNSET: Any = object()
_progress_factory: ContextVar[ProgressFactory | None] = ContextVar("download_progress", default=_UNSET)


@contextmanager
def download_progress(factory: ProgressFactory | None) -> Iterator[None]:
    """Within the block (and the tasks and threads it starts), downloads report to `factory(label, total)`'s
    progress instead of the default bar; None: no progress at all. `progress=False` still turns it off."""
    token = _progress_factory.set(factory)
    try:
        yield
    finally:
        _progress_factory.reset(token)


async def fetch(document: ModelDocument, package: ModelPackage, options: LoadOptions) -> dict[str, Path]:
    """Step three of loading: the package's files on local disk, fetched as `options` allow."""
    return await fetch_package(
        document,
        package,
        ModelCache(options.cache_dir),
        offline=options.offline,
        allow_untrusted=options.allow_untrusted_packages,
        headers=_registry_headers(options),
    )


def _registry_headers(options: LoadOptions) -> Headers:
    """The registry's credentials, sent only to the registry's own origin (None: no registry)."""
    registry = registry_provider(options)
    return registry.headers_for if registry is not None else None  # type: ignore[attr-defined]


async def fetch_package(
    document: ModelDocument,
    package: ModelPackage,
    cache: ModelCache,
    *,
    offline: bool = False,
    allow_untrusted: bool = False,
    headers: Headers = None,
    concurrency: int = 4,
    retries: int = 5,
    backoff_s: float = 0.5,
    progress: bool | None = None,
) -> dict[str, Path]:
    """Every file of the package on local disk, by name: `file://` ones in place, the rest in the cache.

    `headers` is sent with each download: a mapping, or a function of the URL (such as
    `HttpRegistryProvider.headers_for`, which keeps the token to the registry's own origin).
    """
    check_package(document, package, cache, allow_untrusted=allow_untrusted)
    paths = {spec.name: await _verified_local_file(spec, document, package) for spec in _local_files(package)}
    if any(is_cached_file(spec) for spec in package.files):
        transfer = _Transfer(
            where=_where(document, package),
            headers=headers,
            retries=retries,
            backoff_s=backoff_s,
            progress=_wants_progress(progress),
        )
        paths |= await _fetch_into_cache(document, package, cache, transfer, offline=offline, concurrency=concurrency)
    return {spec.name: paths[spec.name] for spec in package.files}


def check_package(document: ModelDocument, package: ModelPackage, cache: ModelCache, *, allow_untrusted: bool) -> None:
    """Refuse unsafe names, missing checksums and unusable URLs, before anything touches the network."""
    where = _where(document, package)
    package_dir = cache.package_dir(document.model_id, package.package_id)
    names = [spec.name for spec in package.files]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise PackageError(f"{where}: file names listed twice: {', '.join(duplicates)}")
    for spec in package.files:
        safe_file_path(package_dir, spec.name)
        _check_url(spec, where)
    if not allow_untrusted:
        _check_trusted(package, where)


def _check_url(spec: FileSpec, where: str) -> None:
    scheme = urlsplit(spec.url).scheme.lower() if spec.url else ""
    if scheme not in ("http", "https", "file"):
        found = f"URL scheme {scheme!r}" if scheme else "a relative URL" if spec.url else "no URL"
        raise PackageError(f"{where}: file {spec.name!r} has {found}; expected http(s):// or file://")


def _check_trusted(package: ModelPackage, where: str) -> None:
    hint = "pass allow_untrusted_packages=True to load it anyway, if you trust its source"
    if not package.trusted:
        raise UntrustedPackageError(f"{where} is marked untrusted; {hint}")
    unchecked = [spec.name for spec in package.files if spec.sha256 is None]
    if unchecked:
        raise UntrustedPackageError(f"{where}: files without a sha256: {', '.join(unchecked)}; {hint}")


def _where(document: ModelDocument, package: ModelPackage) -> str:
    return f"model {document.model_id!r} package {package.package_id!r}"


def _local_files(package: ModelPackage) -> list[FileSpec]:
    return [spec for spec in package.files if not is_cached_file(spec)]


async def _verified_local_file(spec: FileSpec, document: ModelDocument, package: ModelPackage) -> Path:
    """A `file://` file's path, used in place once it exists and its sha256 matches."""
    where = _where(document, package)
    path = _path_of_file_url(spec.url or "", where)
    if not path.is_file():
        raise ModelNotFoundError(f"{where}: file {spec.name!r} is not at {path}")
    if spec.sha256 is not None:
        actual = await anyio.to_thread.run_sync(file_sha256, path)
        if actual != spec.sha256:
            raise ChecksumMismatchError(f"{where}: {path} has sha256 {actual}, expected {spec.sha256}")
    return path


def _path_of_file_url(url: str, where: str) -> Path:
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise PackageError(f"{where}: file URL {redact_url(url)} names host {parts.hostname!r}; only local ones work")
    return Path(url2pathname(parts.path))


@dataclass
class _Transfer:
    """What every download of one package shares."""

    where: str
    headers: Headers
    retries: int
    backoff_s: float
    progress: bool

    def headers_for(self, url: str) -> dict[str, str]:
        chosen = self.headers(url) if callable(self.headers) else self.headers
        return {**(chosen or {}), "Accept-Encoding": "identity"}


async def _fetch_into_cache(
    document: ModelDocument,
    package: ModelPackage,
    cache: ModelCache,
    transfer: _Transfer,
    *,
    offline: bool,
    concurrency: int,
) -> dict[str, Path]:
    """Under the package lock: keep what verifies, download the rest, then mark the package complete."""
    model_id, package_id = document.model_id, package.package_id
    async with cache.lock(model_id, package_id):
        was_complete = cache.is_complete(model_id, package)
        stale = await anyio.to_thread.run_sync(cache.verify, model_id, package)
        if stale and offline:
            raise _offline_error(document, package, cache)
        if stale:
            _report_stale(transfer.where, stale, was_complete)
            cache.discard(model_id, package, stale)
            await _download_all(stale, cache.package_dir(model_id, package_id), transfer, concurrency)
        if stale or not was_complete:
            cache.mark_complete(model_id, package)
            cache.save_document(document)
    return {
        spec.name: cache.file_path(model_id, package_id, spec.name) for spec in package.files if is_cached_file(spec)
    }


def _offline_error(document: ModelDocument, package: ModelPackage, cache: ModelCache) -> OfflineError:
    folder = cache.package_dir(document.model_id, package.package_id)
    return OfflineError(
        f"{_where(document, package)} is not (completely) in the cache at {folder} and offline mode is on; "
        f"pull it while online: streamer models pull {document.model_id}"
    )


def _report_stale(where: str, stale: list[FileSpec], was_complete: bool) -> None:
    if was_complete:
        names = ", ".join(spec.name for spec in stale)
        logger.warning("%s: cached file(s) %s failed verification (corrupted?); fetching them again", where, names)


async def _download_all(files: list[FileSpec], package_dir: Path, transfer: _Transfer, concurrency: int) -> None:
    """Download the files concurrently (at most `concurrency` at once) over one HTTP session."""
    limiter = anyio.CapacityLimiter(max(1, concurrency))
    sizes = [spec.size for spec in files]
    total = None if None in sizes else sum(size for size in sizes if size is not None)
    bar = _progress_for(transfer, total)
    import aiohttp

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(**TIMEOUT_S)) as client:
        with bar:
            try:
                async with anyio.create_task_group() as group:
                    for spec in files:
                        target = safe_file_path(package_dir, spec.name)
                        group.start_soon(_download_file, client, spec, target, transfer, limiter, bar)
            except ExceptionGroup as failures:  # files that fail together (two 401s at once) fail as the first
                first = next(leaves(failures))
                raise first from first.__cause__


def _wants_progress(asked: bool | None) -> bool:
    """`progress=None`: shown where the application set its own progress, else on a terminal."""
    if asked is not None:
        return asked
    return _progress_factory.get() is not _UNSET or sys.stderr.isatty()


def _progress_for(transfer: _Transfer, total: int | None) -> DownloadProgress:
    """The application's progress (see download_progress) when it set one, else the default bar."""
    factory = _progress_factory.get()
    if factory is _UNSET or not transfer.progress:
        return ProgressBar(transfer.where, total, enabled=transfer.progress)
    if factory is None:
        return ProgressBar(transfer.where, total, enabled=False)
    return factory(transfer.where, total)


async def _download_file(
    client: aiohttp.ClientSession,
    spec: FileSpec,
    target: Path,
    transfer: _Transfer,
    limiter: anyio.CapacityLimiter,
    bar: DownloadProgress,
) -> None:
    url = spec.url or ""
    what = f"{transfer.where}: file {spec.name!r} from {redact_url(url)}"
    target.parent.mkdir(parents=True, exist_ok=True)
    async with limiter:
        await retrying(
            lambda: _attempt_download(client, spec, target, transfer.headers_for(url), what, bar),
            what=what,
            retries=transfer.retries,
            backoff_s=transfer.backoff_s,
        )
    logger.info("downloaded %s (%d bytes)", what, target.stat().st_size)


async def _attempt_download(
    client: aiohttp.ClientSession,
    spec: FileSpec,
    target: Path,
    headers: dict[str, str],
    what: str,
    bar: DownloadProgress,
) -> None:
    """One try: stream into the `.part` file (resuming it when it exists), then verify and rename."""
    part = part_path(target)
    offset = part.stat().st_size if part.exists() else 0
    if offset:
        headers = {**headers, "Range": f"bytes={offset}-"}
    async with client.get(spec.url or "", headers=headers) as response:
        offset = _resume_offset(response, offset, part, what)
        hasher = await anyio.to_thread.run_sync(hash_file, part) if offset else hashlib.sha256()
        await _stream_to(response, part, offset, hasher, lambda done: bar.update(spec.name, done))
    _check_received(part, spec, hasher.hexdigest(), what, resumed=offset > 0)
    part.replace(target)


def _resume_offset(response: aiohttp.ClientResponse, offset: int, part: Path, what: str) -> int:
    """Where the body starts in the file: `offset` for a 206 to our Range, 0 for a 200; raise otherwise."""
    status = response.status
    if status == 200:
        return 0
    if status == 206 and offset and response.headers.get("Content-Range", "").startswith(f"bytes {offset}-"):
        return offset
    if status in (206, 416):
        part.unlink(missing_ok=True)
        raise TransientError(f"HTTP {status} to a range request for byte {offset}; starting the file over")
    if status in (401, 403):
        raise AccessError(f"{what}: HTTP {status}, access refused; check the registry token (STREAMER_REGISTRY_TOKEN)")
    if status >= 500 or status in RETRY_STATUSES:
        raise TransientError(f"HTTP {status}")
    raise DownloadError(f"{what}: HTTP {status}" + (" (no such file)" if status == 404 else ""))


async def _stream_to(
    response: aiohttp.ClientResponse, part: Path, offset: int, hasher: Any, on_progress: Callable[[int], None]
) -> None:
    """Append the body to the part file (or start it afresh when offset is 0), hashing as it goes."""
    done = offset
    on_progress(done)
    async with await anyio.open_file(part, "ab" if offset else "wb") as stream:
        async for chunk in response.content.iter_chunked(CHUNK_BYTES):
            await stream.write(chunk)
            hasher.update(chunk)
            done += len(chunk)
            on_progress(done)


def _check_received(part: Path, spec: FileSpec, actual: str, what: str, *, resumed: bool) -> None:
    """A short file is resumed; a wrong one is deleted, then fetched whole again (if it was resumed) or refused."""
    size = part.stat().st_size
    if spec.size is not None and size < spec.size:
        raise TransientError(f"the body ended after {size} of {spec.size} bytes")
    if spec.sha256 is not None and actual != spec.sha256:
        part.unlink(missing_ok=True)
        if resumed:  # the kept part may be from another version of the file: try once from the start
            raise TransientError(f"sha256 {actual} after resuming, expected {spec.sha256}; starting the file over")
        raise ChecksumMismatchError(
            f"{what}: sha256 is {actual}, expected {spec.sha256}; "
            "the download was deleted, so the next pull fetches it again"
        )
    if spec.size is not None and size != spec.size:
        part.unlink(missing_ok=True)
        raise PackageError(f"{what}: {size} bytes, expected {spec.size}; the download was deleted")


@dataclass
class ProgressBar:
    """One line on stderr, `label [#####-----] 12.3/45.6 MB`, redrawn at most ten times a second."""

    label: str
    total: int | None
    enabled: bool
    stream: TextIO = field(default_factory=lambda: sys.stderr)
    done: dict[str, int] = field(default_factory=dict)
    drawn_at: float = 0.0

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.enabled and self.done:
            self.draw()
            self.stream.write("\n")
            self.stream.flush()

    def update(self, name: str, done: int) -> None:
        self.done[name] = done
        if self.enabled and time.monotonic() - self.drawn_at >= 0.1:
            self.draw()

    def draw(self) -> None:
        self.drawn_at = time.monotonic()
        done = sum(self.done.values())
        if self.total:
            filled = min(20, 20 * done // self.total)
            line = f"{self.label} [{'#' * filled}{'-' * (20 - filled)}] {done / 1e6:.1f}/{self.total / 1e6:.1f} MB"
        else:
            line = f"{self.label} {done / 1e6:.1f} MB"
        self.stream.write(f"\r{line}")
        self.stream.flush()
