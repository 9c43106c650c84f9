"""The Sink interface: an async context manager that is handed results one by one."""

from __future__ import annotations

from typing import Literal, Protocol

from ..frames import Result


class Sink(Protocol):
    """Opened once (errors there stop start-up), written per result, closed once (flushes).

    `sources` limits the sink to those source ids (None: all); `queue_size` bounds its own queue and
    `overflow` says what happens when it is full: "block" waits (nothing lost), "drop_oldest" drops
    and counts. A sink without `overflow` blocks.
    """

    sources: frozenset[str] | None
    queue_size: int

    async def __aenter__(self) -> Sink: ...

    async def __aexit__(self, *exc_info: object) -> None: ...

    async def write(self, result: Result) -> None: ...

    def describe(self) -> str: ...


class SinkBase:
    """Defaults shared by the built-in sinks."""

    def __init__(
        self, sources: list[str] | None = None, queue_size: int = 64, overflow: Literal["block", "drop_oldest"] = "block"
    ) -> None:
        self.sources = frozenset(sources) if sources is not None else None
        self.queue_size = queue_size
        self.overflow = overflow

    async def __aenter__(self) -> SinkBase:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None


def accepts(sink: Sink, result: Result) -> bool:
    """Whether `sink` wants results from this result's source."""
    return sink.sources is None or result.source_id in sink.sources
