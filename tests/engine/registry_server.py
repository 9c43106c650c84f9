"""A real model registry for tests: an aiohttp app on 127.0.0.1 serving documents and files from memory.

    GET /models/<model id>.json   a document put in `documents`
    GET /files/<name>             a file put in `files` (Range `bytes=N-` honoured)

Knobs make it misbehave: `fail_next` answers the next requests with 500, `cut_next` closes the
connection part-way through a file, `token` demands a bearer token, `delay_s` slows every file, `honour_range=False` ignores Range.
Every request is counted (`requests`) and its Range and Authorization headers kept (`seen`).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiohttp import web

from streamer.engine.entities import ModelDocument

ANY_PATH = "*"


@dataclass(frozen=True)
class Seen:
    path: str
    range: str | None
    authorization: str | None


@dataclass
class RegistryServer:
    documents: dict[str, dict[str, Any]] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    token: str | None = None
    delay_s: float = 0.0
    honour_range: bool = True
    requests: Counter[str] = field(default_factory=Counter)
    seen: list[Seen] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    cuts: dict[str, int] = field(default_factory=dict)
    url: str = ""

    def file_url(self, name: str) -> str:
        return f"{self.url}/files/{name}"

    def fail_next(self, times: int, path: str = ANY_PATH) -> None:
        """Answer the next `times` requests for `path` (any path by default) with HTTP 500."""
        self.failures[path] += times

    def cut_next(self, path: str, after_bytes: int) -> None:
        """Close the connection after sending `after_bytes` of the body of the next request for `path`."""
        self.cuts[path] = after_bytes

    def file_requests(self) -> int:
        return sum(count for path, count in self.requests.items() if path.startswith("/files/"))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        self.requests[path] += 1
        self.seen.append(Seen(path, request.headers.get("Range"), request.headers.get("Authorization")))
        if self.token is not None and request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.Response(status=401, text="bad token")
        if self._take_failure(path):
            return web.Response(status=500, text="try again")
        if path.startswith("/models/") and path.endswith(".json"):
            return self._document(path.removeprefix("/models/").removesuffix(".json"))
        data = self.files.get(path.removeprefix("/files/"))
        if data is None:
            return web.Response(status=404, text="no such file")
        return await self._send_file(request, data)

    def _take_failure(self, path: str) -> bool:
        for key in (path, ANY_PATH):
            if self.failures[key] > 0:
                self.failures[key] -= 1
                return True
        return False

    def _document(self, model_id: str) -> web.Response:
        document = self.documents.get(model_id)
        if document is None:
            return web.Response(status=404, text="no such model")
        return web.json_response(document)

    async def _send_file(self, request: web.Request, data: bytes) -> web.StreamResponse:
        start = _range_start(request.headers.get("Range")) if self.honour_range else None
        if start is not None and start >= len(data):
            return web.Response(status=416, headers={"Content-Range": f"bytes */{len(data)}"})
        body = data[start or 0 :]
        response = web.StreamResponse(status=206 if start is not None else 200)
        response.content_length = len(body)
        response.headers["Accept-Ranges"] = "bytes"
        if start is not None:
            response.headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        await response.prepare(request)
        await asyncio.sleep(self.delay_s)
        cut = self.cuts.pop(request.path, None)
        if cut is not None:
            return await _cut_after(request, response, body[:cut])
        await response.write(body)
        await response.write_eof()
        return response


def _range_start(header: str | None) -> int | None:
    """N from `bytes=N-` (the only form the downloader sends)."""
    if header is None or not header.startswith("bytes=") or not header.endswith("-"):
        return None
    return int(header.removeprefix("bytes=").removesuffix("-"))


async def _cut_after(request: web.Request, response: web.StreamResponse, sent: bytes) -> web.StreamResponse:
    """Send part of the body, give the client a moment to read it, then drop the connection."""
    await response.write(sent)
    await asyncio.sleep(0.05)
    assert request.transport is not None
    request.transport.close()
    return response


@asynccontextmanager
async def running_registry(**knobs: Any) -> AsyncIterator[RegistryServer]:
    """A RegistryServer listening on a free loopback port for the duration of the block."""
    server = RegistryServer(**knobs)
    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    server.url = f"http://{host}:{port}"
    try:
        yield server
    finally:
        await runner.cleanup()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def payload(size: int, seed: int = 0) -> bytes:
    """`size` deterministic, non-repeating-looking bytes."""
    out = bytearray()
    block = seed.to_bytes(8, "little")
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:size])


def file_entry(name: str, data: bytes, url: str | None, *, checksum: bool = True) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "size": len(data)}
    if url is not None:
        entry["url"] = url
    if checksum:
        entry["sha256"] = sha256(data)
    return entry


def document_json(model_id: str, files: list[dict[str, Any]], **package: Any) -> dict[str, Any]:
    """A registry document with one ONNX package holding `files`."""
    return {
        "model_id": model_id,
        "task": "object-detection",
        "architecture": "yolov8",
        "input_size": [640, 640],
        "class_names": ["person", "car"],
        "packages": [
            {
                "package_id": "onnx-fp32",
                "backend": "onnxruntime",
                "format": "onnx",
                "batch": {"dynamic": True, "min": 1, "max": 8},
                "requirements": {"onnx_opset": 17},
                "files": files,
                **package,
            }
        ],
    }


def publish(
    server: RegistryServer, model_id: str, files: dict[str, bytes], *, checksum: bool = True, **package: Any
) -> ModelDocument:
    """Serve the files under /files/<model id>/ with a document listing them; return that document."""
    entries = []
    for name, data in files.items():
        server.files[f"{model_id}/{name}"] = data
        entries.append(file_entry(name, data, server.file_url(f"{model_id}/{name}"), checksum=checksum))
    document = document_json(model_id, entries, **package)
    server.documents[model_id] = document
    return msgspec.convert(document, type=ModelDocument)
