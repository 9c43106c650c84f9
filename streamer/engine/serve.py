"""`streamer models serve FOLDER`: a local models folder as a read-only HTTP registry, so that nodes
without shared storage fetch, verify and cache the very same packages.

    GET /models/<model id>.json              <FOLDER>/<model id>/model.json, in the format the HTTP
                                             provider reads (providers/http.py): each local file
                                             named by a URL relative to the document, with its size
                                             and sha256 (hashed once per version of the file when
                                             the manifest does not declare it)
    GET /files/<model id>/<path in its folder>   a file that model's manifest names (Range honoured)

HEAD is answered as GET; any other method gets 405, anything else 404. The manifests are read as
the local provider reads them (providers/local.py), so a manifest that names a file outside its
model folder is refused the same way; besides, only files a manifest names are served, and only
when their real path (symlinks followed) lies inside FOLDER: no listing, no `..`, no escape. With a
token every request must carry `Authorization: Bearer <token>` (compared in constant time; a
wrong or missing one gets 401). The token is never logged.
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import quote, urlsplit
from urllib.request import url2pathname

import anyio
import anyio.to_thread
import msgspec
from aiohttp import web

from ..errors import ModelError, ParameterError, ServerError
from .cache import file_sha256
from .entities import FileSpec, ModelDocument
from .providers.local import MANIFEST, read_model_folder

log = logging.getLogger(__name__)

DEFAULT_PORT = 8470


class ModelFolderRegistry:
    """The aiohttp app serving one models folder (see the module docstring for the routes)."""

    def __init__(self, root: str | Path, *, token: str | None = None) -> None:
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise ParameterError(f"no models folder at {str(root)!r}: give a folder holding <model id>/{MANIFEST}")
        self._token = token.encode() if token else None
        self._hashes: dict[tuple[str, int, int, int], str] = {}  # (path, inode, size, mtime_ns) -> sha256

    def __repr__(self) -> str:
        return f"ModelFolderRegistry({str(self.root)!r}, token={'***' if self._token else None})"

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._authorize])
        app.router.add_get("/models/{model_id:.+}.json", self.get_document)
        app.router.add_get("/files/{tail:.+}", self.get_file)
        return app

    def model_ids(self) -> list[str]:
        """Every model id the folder holds (for the start-up line; never served as a listing)."""
        found = (path.parent.relative_to(self.root).as_posix() for path in self.root.rglob(MANIFEST))
        return sorted(model_id for model_id in found if self._model_folder(model_id) is not None)

    @web.middleware
    async def _authorize(self, request: web.Request, handler: Callable) -> web.StreamResponse:  # type: ignore[type-arg]
        if self._token is not None:
            given = request.headers.get("Authorization", "")
            scheme, _, credentials = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(credentials.strip().encode(), self._token):
                reason = "a bearer token is required" if not given else "the token is not accepted"
                return web.Response(status=401, text=reason, headers={"WWW-Authenticate": 'Bearer realm="models"'})
        return await handler(request)

    async def get_document(self, request: web.Request) -> web.Response:
        model_id = request.match_info["model_id"]
        body = await anyio.to_thread.run_sync(self.document_bytes, model_id)
        if body is None:
            return web.Response(status=404, text="no such model")
        return web.Response(body=body, content_type="application/json")

    async def get_file(self, request: web.Request) -> web.StreamResponse:
        path = await anyio.to_thread.run_sync(self.file_path, request.match_info["tail"])
        if path is None:
            return web.Response(status=404, text="no such file")
        return web.FileResponse(path)

    # ---- blocking helpers (worker threads) ---------------------------------------------------

    def document_bytes(self, model_id: str) -> bytes | None:
        """The model's document as served (JSON), None if the folder has no such model; a broken
        manifest is logged and answered as missing (its details are for the operator, not clients)."""
        document = self._document(model_id)
        if document is None:
            return None
        for package in document.packages:
            package.files = [self._served_spec(model_id, spec) for spec in package.files]
        return msgspec.json.encode(document)

    def file_path(self, tail: str) -> Path | None:
        """The real path of `/files/<tail>` when a manifest names it, else None."""
        segments = tail.split("/")
        for split in range(1, len(segments)):
            model_id, inside = "/".join(segments[:split]), "/".join(segments[split:])
            document = self._document(model_id)
            path = self._local_files(model_id, document).get(inside) if document is not None else None
            if path is not None:
                return path
        return None

    def _document(self, model_id: str) -> ModelDocument | None:
        folder = self._model_folder(model_id)
        if folder is None:
            return None
        try:
            return read_model_folder(folder)
        except ModelError as exc:
            log.warning("models serve: %s is not served: %s", model_id, exc.message)
            return None

    def _model_folder(self, model_id: str) -> Path | None:
        """`<root>/<model id>` when it has a manifest and lies inside the root, else None."""
        if any(segment in ("", ".", "..") for segment in model_id.split("/")) or "\0" in model_id:
            return None
        folder = (self.root / model_id).resolve()
        return folder if folder.is_relative_to(self.root) and (folder / MANIFEST).is_file() else None

    def _local_files(self, model_id: str, document: ModelDocument) -> dict[str, Path]:
        """Path inside the model folder -> real path, for each local file the document names."""
        folder = (self.root / model_id).resolve()
        found = {}
        for package in document.packages:
            for spec in package.files:
                path = _local_path(spec)
                if path is not None and path.is_relative_to(folder) and path.is_file():
                    found[path.relative_to(folder).as_posix()] = path
        return found

    def _served_spec(self, model_id: str, spec: FileSpec) -> FileSpec:
        """The spec with a URL relative to the document (`../files/...`), its size and sha256."""
        path = _local_path(spec)
        if path is None:  # an http(s) file: the client fetches it from there
            return spec
        inside = path.relative_to((self.root / model_id).resolve()).as_posix()  # read_model_folder checked it
        depth = len(model_id.split("/"))  # /models/a/b.json -> ../../files/a/b/...
        quoted = "/".join(quote(segment, safe="") for segment in f"{model_id}/{inside}".split("/"))
        size = spec.size if spec.size is not None else path.stat().st_size
        return msgspec.structs.replace(spec, url="../" * depth + f"files/{quoted}", size=size,
                                       sha256=spec.sha256 or self._sha256(path))

    def _sha256(self, path: Path) -> str:
        status = path.stat()
        key = (str(path), status.st_ino, status.st_size, status.st_mtime_ns)
        if key not in self._hashes:
            self._hashes[key] = file_sha256(path)
        return self._hashes[key]


def _local_path(spec: FileSpec) -> Path | None:
    """The real path of a `file://` spec (read_model_folder gives every local file such a URL, inside
    the model folder once symlinks are followed), else None."""
    parts = urlsplit(spec.url or "")
    return Path(url2pathname(parts.path)).resolve() if parts.scheme == "file" else None


@asynccontextmanager
async def serving_models(
    root: str | Path, *, host: str = "127.0.0.1", port: int = 0, token: str | None = None
) -> AsyncIterator[str]:
    """Serve the folder for the duration of the block; yields the base URL (`http://host:port`),
    the one to give the HTTP provider (`registry_url`, or STREAMER_REGISTRY_URL)."""
    registry = ModelFolderRegistry(root, token=token)
    runner = web.AppRunner(registry.app(), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            raise ServerError(f"models serve: cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        bound_host, bound_port = runner.addresses[0][:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        yield f"http://{shown}:{bound_port}"
    finally:
        await runner.cleanup()


async def serve_models_forever(
    root: str | Path, *, host: str = "127.0.0.1", port: int = DEFAULT_PORT, token: str | None = None,
    ready: Callable[[str, list[str]], None] | None = None,
) -> None:
    """Serve until cancelled; `ready(url, model ids)` once listening."""
    async with serving_models(root, host=host, port=port, token=token) as url:
        if ready is not None:
            ready(url, ModelFolderRegistry(root).model_ids())
        await anyio.sleep_forever()


def token_from_environment() -> str | None:
    """The token clients send (STREAMER_REGISTRY_TOKEN), so one variable serves both ends."""
    from .providers.http import TOKEN_VARIABLE

    return os.environ.get(TOKEN_VARIABLE) or None
