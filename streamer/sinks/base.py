"""The Sink interface: every hook a sink may have, declared with its default, so callers never probe.

    sink = JsonlSink(JsonlSinkConfig(path="out.jsonl"))   built from its config struct (or keywords
                                                          that build it: JsonlSink(path="out.jsonl"))
    async with sink:                                      open: an error here stops start-up
        await sink.write(item)                            one Result or Event
        await sink.flush()                                what was written, handed on
        await sink.idle()                                 nothing came for a moment: write out what is held
        sink.flush_to_disk()                              what was written, on disk
        sink.stats(); sink.describe()                     its own counters; its name
                                                          close: flushes, within the sink's deadline

A sink of your own subclasses `Sink`, calls `super().__init__(config)` with a `SinkConfigBase` (or
its own config struct) and overrides `write` and whichever other hooks it needs; the pipeline
refuses anything else with a TypeError, so a sink is never half an interface. The promises below
are checked for every built-in sink by one suite, tests/sinks/test_contract.py: a new sink is done
when it has a case there and the suite passes.
"""

from __future__ import annotations

import abc
import hashlib
from collections.abc import Iterable
from typing import Any, Literal, Union

from ..config.schema import SinkConfigBase
from ..frames import Event, Result

Item = Union[Result, Event]
Kind = Literal["frames", "events"]


class Sink(abc.ABC):
    """A place results go: opened once, written item by item, closed once.

    What every sink promises, and the pipeline relies on:

    - `config.sources` limits it to those source ids (None: all); `kinds` says whether it takes
      each frame's Result ("frames"), the Events stages raise ("events"), or both.
    - Its own queue holds `config.queue_size` items; when full, `config.overflow` "block" makes the
      pipeline wait (nothing lost), "drop_oldest" drops the oldest and counts it.
    - Items of one source reach `write` in the order they were produced, one at a time.
    - A `write` that cannot write this one item, but can take the next, raises SinkWriteError:
      the pipeline counts it as failed and goes on; any other exception stops the pipeline.
    - Closing (`__aexit__`) flushes what was written and returns within the sink's own deadline,
      also when what it writes to is gone.
    - `resume` (a run restarted from a checkpoint, given to the constructor) makes a sink that
      writes files continue them instead of replacing them; others ignore it.
    """

    def __init__(self, config: SinkConfigBase, *, kinds: Iterable[Kind] = ("frames",), resume: bool = False) -> None:
        self.config = config
        self.sources = frozenset(config.sources) if config.sources is not None else None
        self.kinds = frozenset(kinds)
        self.resume = resume

    @property
    def queue_size(self) -> int:
        return self.config.queue_size

    @property
    def overflow(self) -> Literal["block", "drop_oldest"]:
        return self.config.overflow

    async def __aenter__(self) -> Sink:
        """Open: acquire files, connections and tasks; raise SinkError if the sink cannot work."""
        return self

    async def __aexit__(self, *exc_info: object) -> bool | None:
        """Close: flush, release everything, within the sink's own deadline. Default: nothing to do."""
        return None

    @abc.abstractmethod
    async def write(self, item: Item) -> None:
        """Take one item (SinkWriteError: this one failed, the next may still go). The one hook
        without a default: a class that does not define it cannot be built."""

    async def flush(self) -> None:
        """Return once what was written so far is handed on (to the OS, the endpoint, the broker).
        Default: a sink that writes through has nothing to hand on."""

    async def idle(self) -> None:
        """Nothing came for a moment (`IDLE_AFTER_S`): write out what is held in memory, without
        waiting on a network. Default: nothing held."""

    def flush_to_disk(self) -> None:
        """What was written so far, durably on disk (a checkpoint is saved right after; blocking,
        no await in between). Default: nothing a checkpoint depends on."""

    def describe(self) -> str:
        """Its name in logs, metrics, /status and the run's summary (no secrets)."""
        return type(self).__name__

    def stats(self) -> dict[str, float]:
        """What this sink counts beyond what the pipeline counts for every sink (for metrics)."""
        return {}


def accepts(sink: Sink, item: Item) -> bool:
    """Whether `sink` wants this result or event: its kind, from its source."""
    kind = "events" if isinstance(item, Event) else "frames"
    if kind not in sink.kinds:
        return False
    return sink.sources is None or item.source_id in sink.sources


def idempotency_key(item: Item) -> str:
    """A key unique to this result or event (model, source, frame, capture time, event), hashed.

    The capture time is part of it because a live source's frame indexes start again at 0 after a
    restart: without it, a receiver deduping by key would throw away the new run's results.
    """
    return hashlib.sha256(item.identity().encode()).hexdigest()[:32]


def keyed_record(item: Item) -> dict[str, Any]:
    """What a sink that may deliver twice (webhook, MQTT) sends: the JSON form, with the key to dedupe by."""
    return {**item.to_dict(), "idempotency_key": idempotency_key(item)}
