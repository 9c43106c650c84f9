"""Shared by the service tests: a stream with its server, a scrape parser, polling with a deadline."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Awaitable, Callable

import aiohttp
import anyio
from prometheus_client.parser import text_string_to_metric_families

import streamer
from streamer.pipeline.runner import Stream
from streamer.service.server import Server, serve

PATTERN = "testsrc2=size=160x96:rate=15"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def lavfi(id: str, **extra: Any) -> dict[str, Any]:
    return {"type": "lavfi", "id": id, "graph": PATTERN, **extra}


@asynccontextmanager
async def served(
    model: Any, *sources: dict[str, Any], server: dict[str, Any] | None = None, **tables: Any
) -> AsyncIterator[tuple[Stream, Server, aiohttp.ClientSession]]:
    """A keep-alive stream of `sources` with its server on a free port, and a client for that server."""
    config = {
        "sources": list(sources),
        "batching": {"max_batch_size": 2, "max_wait_ms": 5},
        "server": {"port": 0, **(server or {})},
        **tables,
    }
    async with streamer.open(config, model=model, keep_alive=True, results=False) as stream:
        async with serve(stream, stream.config.server) as running, aiohttp.ClientSession(running.url) as http:
            yield stream, running, http


def parse(text: str) -> Samples:
    """Every sample of a scrape, by (name, labels)."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def scrape(http: aiohttp.ClientSession, headers: dict[str, str] | None = None) -> Samples:
    async with http.get("/metrics", headers=headers) as response:
        assert response.status == 200, await response.text()
        return parse(await response.text())


async def until(condition: Callable[[], Awaitable[Any]], timeout: float = 15.0, step: float = 0.05) -> Any:
    """Poll `condition()` until it returns something truthy (and return that), within `timeout`."""
    with anyio.fail_after(timeout):
        while not (found := await condition()):
            await anyio.sleep(step)
    return found


async def get_json(http: aiohttp.ClientSession, path: str, **kwargs: Any) -> tuple[int, Any]:
    async with http.get(path, **kwargs) as response:
        return response.status, await response.json()
