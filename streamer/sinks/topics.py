"""Topic sink: in-process subscriptions with MQTT topic filters, for code that embeds streamer.

Every result is published on these topics:

    <source>/detections                 every result of that source, with or without detections
    <source>/detections/<class_name>    once per class found in the frame (the whole result is passed)
    <source>/events/<kind>              each event a stage raised (`zone_enter`, `line_cross`...)

so `cam1/detections` sees every frame of cam1, `+/detections/face` every frame with a face from any
source, and `#` everything. A `/`, `+` or `#` inside a source id or class name becomes `_`, and so
does a leading `$`, so each name stays one ordinary level. A subscription receives a result at most
once, however many of its topics its filter matches.

Filters follow MQTT exactly: `+` matches one level (an empty one too), `#` matches any number of
levels, including none (`a/#` matches `a`), and must be the last level; a wildcard must fill its
whole level; a filter starting with a wildcard does not match topics starting with `$`.
"""

from __future__ import annotations

import inspect
import logging
import threading
from typing import Any, Callable

import anyio

from ..config import configured
from ..config.schema import SinkConfigBase
from ..frames import Event
from .base import Item, Sink
from .callback import callable_name, is_async_callable

log = logging.getLogger(__name__)


def topic_matches(pattern: str, topic: str) -> bool:
    """Whether the MQTT topic filter `pattern` matches the topic name `topic`."""
    return _matches(parse_filter(pattern), _parse_topic(topic))


def topics_for(result: Item) -> list[str]:
    """The topics a result or event is published on (see the module docstring)."""
    if isinstance(result, Event):
        return [f"{_level(result.source_id)}/events/{_level(result.kind)}"]
    base = f"{_level(result.source_id)}/detections"
    classes = dict.fromkeys(_level(name) for name in result.class_names())
    return [base, *(f"{base}/{name}" for name in classes)]


def parse_filter(pattern: str) -> list[str]:
    """The levels of a valid topic filter; ValueError saying what is wrong otherwise."""
    if not isinstance(pattern, str) or not pattern:
        raise ValueError(f"topic filter {pattern!r}: must be a non-empty string")
    levels = pattern.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            raise ValueError(f"topic filter {pattern!r}: '#' must be a whole level and the last one, as in 'cam1/#'")
        if "+" in level and level != "+":
            raise ValueError(f"topic filter {pattern!r}: '+' must be a whole level, as in '+/detections'")
        if "\0" in level:
            raise ValueError(f"topic filter {pattern!r}: must not contain a NUL character")
    return levels


def _parse_topic(topic: str) -> list[str]:
    if not isinstance(topic, str) or not topic:
        raise ValueError(f"topic {topic!r}: must be a non-empty string")
    if "+" in topic or "#" in topic or "\0" in topic:
        raise ValueError(f"topic {topic!r}: a topic name cannot contain '+', '#' or NUL (only filters have wildcards)")
    return topic.split("/")


def _matches(levels: list[str], names: list[str]) -> bool:
    if names[0].startswith("$") and levels[0] in ("+", "#"):
        return False
    for i, level in enumerate(levels):
        if level == "#":
            return True
        if i >= len(names) or (level != "+" and level != names[i]):
            return False
    return len(levels) == len(names)


def _level(name: str) -> str:
    name = name.replace("/", "_").replace("+", "_").replace("#", "_")
    return "_" + name[1:] if name.startswith("$") else name


class Subscription:
    """One callback on one topic filter: `delivered` counts calls (failed ones too), `errors` the
    calls that raised; `cancel()` ends it."""

    def __init__(self, pattern: str, callback: Callable[[Item], Any], owner: TopicSink) -> None:
        self.pattern = pattern
        self.callback = callback
        self.delivered = 0
        self.errors = 0
        self._levels = parse_filter(pattern)
        self._is_async = is_async_callable(callback)
        self._owner = owner

    @property
    def active(self) -> bool:
        return self in self._owner.subscriptions

    def cancel(self) -> None:
        """Stop deliveries (a call already running finishes). Safe to call twice."""
        self._owner._remove(self)

    def matches(self, topics: list[list[str]]) -> bool:
        return any(_matches(self._levels, names) for names in topics)

    async def deliver(self, result: Item) -> None:
        """Call the callback; an exception is logged and counted, never raised."""
        self.delivered += 1
        try:
            if self._is_async:
                await self.callback(result)
            elif inspect.isawaitable(value := await anyio.to_thread.run_sync(self.callback, result)):
                await value  # a callable object whose __call__ returns a coroutine
        except Exception:
            self.errors += 1
            log.exception(
                "topic subscription %r: callback %s raised on %s frame %d",
                self.pattern,
                callable_name(self.callback),
                result.source_id,
                result.frame_index,
            )

    def __repr__(self) -> str:
        return (
            f"Subscription({self.pattern!r}, {callable_name(self.callback)}, "
            f"delivered={self.delivered}, errors={self.errors})"
        )


class TopicSink(Sink):
    """Hands each result to the subscriptions whose filter matches one of its topics.

    Sync callbacks run in a worker thread, async ones are awaited. The subscriptions matching one
    result run concurrently, and `write` returns when all are done, so each subscription sees its
    results in order. Subscribing and cancelling are allowed at any time, from callbacks too.
    """

    def __init__(self, config: SinkConfigBase | None = None, /, **options: Any) -> None:
        super().__init__(configured(SinkConfigBase, config, options), kinds=("frames", "events"))
        self.subscriptions: tuple[Subscription, ...] = ()  # replaced, never mutated: safe to iterate
        self._lock = threading.Lock()  # sync callbacks may subscribe or cancel from worker threads

    def describe(self) -> str:
        return "topics"  # stable: the run's summary names sinks by this

    def subscribe(self, pattern: str, callback: Callable[[Item], Any]) -> Subscription:
        """Call `callback(result)` for every result published on a topic `pattern` matches."""
        if not callable(callback):
            raise TypeError(f"topic subscription {pattern!r}: callback must be callable, got {callback!r}")
        subscription = Subscription(pattern, callback, self)
        with self._lock:
            self.subscriptions = (*self.subscriptions, subscription)
        return subscription

    async def write(self, result: Item) -> None:
        topics = [name.split("/") for name in topics_for(result)]
        matching = [s for s in self.subscriptions if s.matches(topics)]
        if len(matching) == 1:
            await matching[0].deliver(result)
        elif matching:
            async with anyio.create_task_group() as group:
                for subscription in matching:
                    group.start_soon(subscription.deliver, result)

    def _remove(self, subscription: Subscription) -> None:
        with self._lock:
            self.subscriptions = tuple(s for s in self.subscriptions if s is not subscription)

