"""The Sink interface: an async context manager that is handed results one by one."""

from __future__ import annotations

import hashlib
from typing import Iterable, Literal, Protocol, Union

from ..frames import Event, Result

Item = Union[Result, Event]
Kind = Literal["frames", "events"]


class Sink(Protocol):
    """Opened once (errors there stop start-up), written per result, closed once (flushes).

    `sources` limits the sink to those source ids (None: all); `kinds` says whether it takes each
    frame's Result ("frames"), the Events stages raise ("events"), or both (without `kinds`: frames
    only). `queue_size` bounds its own queue and
    `overflow` says what happens when it is full: "block" waits (nothing lost), "drop_oldest" drops
    and counts. A sink without `overflow` blocks. A `write` that cannot write this one item, but
    can take the next, raises SinkWriteError: the pipeline counts it as failed and goes on; any
    other exception stops the pipeline.
    """

    sources: frozenset[str] | None
    queue_size: int

    async def __aenter__(self) -> Sink: ...

    async def __aexit__(self, *exc_info: object) -> None: ...

    async def write(self, result: Item) -> None: ...

    def describe(self) -> str: ...


class SinkBase:
    """Defaults shared by the built-in sinks."""

    def __init__(
        self,
        sources: list[str] | None = None,
        queue_size: int = 64,
        overflow: Literal["block", "drop_oldest"] = "block",
        kinds: Iterable[Kind] = ("frames",),
    ) -> None:
        self.sources = frozenset(sources) if sources is not None else None
        self.kinds = frozenset(kinds)
        self.queue_size = queue_size
        self.overflow = overflow

    async def __aenter__(self) -> SinkBase:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None


def accepts(sink: Sink, item: Item) -> bool:
    """Whether `sink` wants this result or event: its kind, from its source."""
    kind = "events" if isinstance(item, Event) else "frames"
    if kind not in getattr(sink, "kinds", ("frames",)):
        return False
    return sink.sources is None or item.source_id in sink.sources


def idempotency_key(item: Item) -> str:
    """A key unique to this result or event (model, source, frame, capture time, event), hashed.

    The capture time is part of it because a live source's frame indexes start again at 0 after a
    restart: without it, a receiver deduping by key would throw away the new run's results.
    """
    return hashlib.sha256(item.identity().encode()).hexdigest()[:32]
