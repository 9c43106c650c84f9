"""A webhook receiver for benchmarks: an aiohttp server on 127.0.0.1 that counts what it is sent.

    POST /<anything>   a JSON array of results, each with an `idempotency_key` and a `source`

(the body the webhook sink sends). It runs its own event loop in a daemon thread, so a benchmark
can start it, read its counters while it serves and stop it, all from plain synchronous code:

    with Receiver() as receiver:          # listening on an ephemeral port once this returns
        ...  receiver.url  ...  receiver.counts()  ...

A body that is not such an array is answered 400 and counted in `failures` (with the reason).
Results are deduplicated by idempotency key: `counts().unique` is what arrived at least once,
`counts().received` what arrived in all, replays included.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

import msgspec
from aiohttp import web

START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0


class _Posted(msgspec.Struct):
    idempotency_key: str
    source: str


_decoder = msgspec.json.Decoder(list[_Posted])


@dataclass(frozen=True)
class Counts:
    """The receiver's counters at one moment."""

    unique: int
    received: int
    requests: int
    failures: int
    by_source: dict[str, int] = field(default_factory=dict)


class Receiver:
    """Counts the results POSTed to it; see the module docstring."""

    def __init__(self) -> None:
        self.port = 0
        self.failure_reasons: list[str] = []
        self._keys: set[str] = set()
        self._received = self._requests = 0
        self._by_source: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="webhook-receiver", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def counts(self) -> Counts:
        with self._lock:
            return Counts(len(self._keys), self._received, self._requests, len(self.failure_reasons),
                          dict(self._by_source))

    # ---- starting and stopping ---------------------------------------------------------------

    def start(self) -> Self:
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S):
            raise RuntimeError("the webhook receiver did not start")
        if self._startup_error is not None:
            raise RuntimeError(f"the webhook receiver did not start: {self._startup_error}") from self._startup_error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(STOP_TIMEOUT_S)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    # ---- the server thread -------------------------------------------------------------------

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except Exception as exc:  # noqa: BLE001 - any start-up failure is reported by start()
            self._startup_error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            self.port = runner.addresses[0][1]
            self._ready.set()
            await self._stop.wait()
        finally:
            await runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            results = _decoder.decode(body)
        except msgspec.DecodeError as exc:
            with self._lock:
                self.failure_reasons.append(f"{request.path}: not a JSON array of results: {exc}")
            return web.Response(status=400, text=str(exc))
        with self._lock:
            self._requests += 1
            self._received += len(results)
            for result in results:
                if result.idempotency_key not in self._keys:
                    self._keys.add(result.idempotency_key)
                    self._by_source[result.source] += 1
        return web.Response(text="ok")
