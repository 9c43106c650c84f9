"""A webhook receiver for tests: an aiohttp app on 127.0.0.1 that records what it is sent.

    POST /<anything>   a JSON array of results, each with an `idempotency_key`

Knobs make it misbehave: `down()` stops listening (and drops requests on connections already
open) until `up()` listens again on the same port; `fail_next(n)` answers the next n requests
with 500; `refuse(key)` answers 422 to any batch holding that key; `delay_s` slows every answer.
Accepted requests are kept (`requests`: raw body, headers, parsed results); `unique()` is every
accepted result once, deduplicated by key, in order of first arrival.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class Received:
    body: bytes
    headers: dict[str, str]
    results: list[dict[str, Any]]


@dataclass
class Receiver:
    delay_s: float = 0.0
    failures: int = 0
    refused: dict[str, tuple[int, str]] = field(default_factory=dict)
    requests: list[Received] = field(default_factory=list)
    answered: dict[int, int] = field(default_factory=dict)  # status -> how many times
    dropped_while_down: int = 0
    port: int = 0
    is_down: bool = False
    _runner: web.AppRunner | None = None
    _site: web.TCPSite | None = None
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def fail_next(self, times: int) -> None:
        """Answer the next `times` requests with HTTP 500."""
        self.failures += times

    def refuse(self, key: str, status: int = 422, text: str = "unprocessable result") -> None:
        """Answer `status` (a 4xx) with `text` to any batch holding the result with this key."""
        self.refused[key] = (status, text)

    def unique(self) -> list[dict[str, Any]]:
        seen: dict[str, dict[str, Any]] = {}
        for request in self.requests:
            for result in request.results:
                seen.setdefault(result["idempotency_key"], result)
        return list(seen.values())

    def received(self) -> int:
        """Results accepted, duplicates included."""
        return sum(len(request.results) for request in self.requests)

    async def wait_for(self, count: int, timeout_s: float = 10.0) -> None:
        """Until `count` distinct results have been accepted."""
        async with asyncio.timeout(timeout_s):
            while len(self.unique()) < count:
                self._arrived.clear()
                await self._arrived.wait()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if self.is_down:  # a connection opened before down(): drop it without an answer
            self.dropped_while_down += 1
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=503)
        await asyncio.sleep(self.delay_s)
        return self._answer(body, dict(request.headers))

    def _answer(self, body: bytes, headers: dict[str, str]) -> web.Response:
        if self.failures > 0:
            self.failures -= 1
            return self._count(web.Response(status=500, text="try again later"))
        results = json.loads(body)
        for result in results:
            if result["idempotency_key"] in self.refused:
                status, text = self.refused[result["idempotency_key"]]
                return self._count(web.Response(status=status, text=text))
        self.requests.append(Received(body, headers, results))
        self._arrived.set()
        return self._count(web.Response(status=200, text="ok"))

    def _count(self, response: web.Response) -> web.Response:
        self.answered[response.status] = self.answered.get(response.status, 0) + 1
        return response

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_route("POST", "/{tail:.*}", self.handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await self.up()
        return self

    async def up(self) -> None:
        """Listen (again) on the same port."""
        assert self._runner is not None
        self._site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await self._site.start()
        self.port = self._runner.addresses[0][1]
        self.is_down = False

    async def down(self) -> None:
        """Stop listening: new connections are refused, requests on open ones dropped."""
        self.is_down = True
        if self._site is not None:
            await self._site.stop()
            self._site = None

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


@asynccontextmanager
async def running_receiver(**knobs: Any) -> AsyncIterator[Receiver]:
    """A Receiver listening on a free loopback port for the duration of the block."""
    receiver = await Receiver(**knobs).start()
    try:
        yield receiver
    finally:
        await receiver.stop()
