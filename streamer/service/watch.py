"""What the live page shows, taken from the stream's results as they pass.

`Watch(stream)` subscribes to every topic (`#`, see sinks/topics.py) with a callback that returns at
once, so watching never slows the pipeline:

- `Previews`: the latest result per source is kept only while someone watches that source (a
  preview was asked for within the last `WATCHED_S`); a JPEG is drawn (the video sink's Annotator:
  boxes, labels, zones, lines) and encoded only when asked, in a worker thread, at most once per
  `MIN_INTERVAL_S` per source (other requests get the same bytes), at most `PREVIEW_WIDTH` wide.
- `History`: per second and per source, frames processed and capture-to-result latency (p50, p99),
  for the last `HISTORY_S` seconds: the page's charts.
- `Feed`: events (zone enters and leaves, line crosses, appearances, user stages' own) and each
  second's sample, pushed to every page that listens (`GET /events`, server-sent events). Each
  listener has a bounded queue; one that falls `LISTENER_QUEUE` items behind is dropped (its
  connection closed: the page reconnects and gets the backlog), never waited for.
"""

from __future__ import annotations

import io
import logging
import math
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Callable

import anyio
import msgspec
import numpy as np
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ..frames import Event, Result
from ..sinks.spool import json_default

if TYPE_CHECKING:
    from ..pipeline.runner import Stream

log = logging.getLogger("streamer.server")

WATCHED_S = 5.0  # a source stays watched this long after its last preview request
MIN_INTERVAL_S = 0.2  # at most 5 previews a second per source are drawn
PREVIEW_WIDTH = 640
PREVIEW_QUALITY = 75
FIRST_FRAME_WAIT_S = 2.0  # a first request waits this long for a frame of a source nobody watched
HISTORY_S = 300  # seconds of samples kept for the charts
RECENT_EVENTS = 100  # events a new listener gets first
LISTENER_QUEUE = 256

_encode_json = msgspec.json.Encoder(enc_hook=json_default).encode


class Watch:
    """The previews, the per-second history and the event feed of one stream; `close()` ends them."""

    def __init__(self, stream: Stream, clock: Callable[[], float] = time.monotonic) -> None:
        self.feed = Feed()
        self.history = History(self.feed.publish, clock)
        self.previews = Previews(clock)
        self._subscription = stream.subscribe("#", self._seen)

    async def _seen(self, item: Result | Event) -> None:
        if isinstance(item, Event):
            self.feed.publish("event", event_body(item))
        else:
            self.history.count(item)
            self.previews.offer(item)

    def close(self) -> None:
        self._subscription.cancel()
        self.feed.close()


def event_body(event: Event) -> dict[str, Any]:
    """An event as the page shows it: its JSON line without the model's provenance."""
    body = event.to_dict()
    body.pop("model", None)
    body.pop("schema", None)
    return body


class Previews:
    """The latest result of each watched source, and its last JPEG (kept: a few kilobytes)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.encoded = 0  # JPEGs drawn and encoded, all sources together
        self._watched_until: dict[str, float] = {}
        self._latest: dict[str, Result] = {}
        self._arrived: dict[str, anyio.Event] = {}
        self._jpeg: dict[str, tuple[float, tuple[int, int, float], bytes]] = {}  # source -> (when, frame drawn, bytes)
        self._locks: dict[str, anyio.Lock] = {}
        self._drawing = anyio.CapacityLimiter(1)  # one preview drawn at a time, whatever the viewers
        self._annotate: Callable[[Result], np.ndarray] | None = None

    @property
    def holding(self) -> set[str]:
        """The sources whose latest frame is held (those watched)."""
        return set(self._latest)

    def watching(self, source_id: str) -> bool:
        return self.clock() < self._watched_until.get(source_id, -math.inf)

    def offer(self, result: Result) -> None:
        """Keep `result` if its source is watched (and let go of the one before); called per frame."""
        source_id = result.source_id
        if not self.watching(source_id):
            self._latest.pop(source_id, None)  # nobody looks: hold no frame
            return
        self._latest[source_id] = result
        arrived = self._arrived.pop(source_id, None)
        if arrived is not None:
            arrived.set()

    async def jpeg(self, source_id: str) -> bytes | None:
        """The source's latest frame drawn as a JPEG; None when it has produced none yet (or none
        within FIRST_FRAME_WAIT_S of being watched). Marks the source watched (again once answered:
        a slow drawing must not let the source go unwatched meanwhile)."""
        try:
            self._watched_until[source_id] = self.clock() + WATCHED_S
            return await self._drawn(source_id)
        finally:
            self._watched_until[source_id] = self.clock() + WATCHED_S

    async def _drawn(self, source_id: str) -> bytes | None:
        async with self._locks.setdefault(source_id, anyio.Lock()):
            cached = self._jpeg.get(source_id)
            if cached is not None and self.clock() - cached[0] < MIN_INTERVAL_S:
                return cached[2]
            result = self._latest.get(source_id) or await self._first_frame(source_id, cached is None)
            if result is None:
                return cached[2] if cached is not None else None
            drawn = _frame_key(result)
            if cached is not None and cached[1] == drawn:  # no newer frame (a paused source)
                return cached[2]
            data = await anyio.to_thread.run_sync(self._draw, result, limiter=self._drawing)
            self._jpeg[source_id] = (self.clock(), drawn, data)
            self.encoded += 1
            return data

    async def _first_frame(self, source_id: str, wait: bool) -> Result | None:
        if not wait:
            return None
        arrived = self._arrived.setdefault(source_id, anyio.Event())
        with anyio.move_on_after(FIRST_FRAME_WAIT_S):
            await arrived.wait()
        return self._latest.get(source_id)

    def forget(self, source_id: str) -> None:
        """A removed source: its frame and JPEG are let go."""
        for kept in (self._latest, self._jpeg, self._watched_until, self._locks):
            kept.pop(source_id, None)

    def _draw(self, result: Result) -> bytes:
        """Runs in a worker thread: boxes, labels, zones and lines drawn, scaled down, JPEG-encoded."""
        from PIL import Image

        if self._annotate is None:
            from ..sinks.video import Annotator

            self._annotate = Annotator()
        image = Image.fromarray(np.ascontiguousarray(self._annotate(result)))
        if image.width > PREVIEW_WIDTH:
            image = image.resize((PREVIEW_WIDTH, max(1, round(image.height * PREVIEW_WIDTH / image.width))))
        out = io.BytesIO()
        image.save(out, "JPEG", quality=PREVIEW_QUALITY)
        return out.getvalue()


def _frame_key(result: Result) -> tuple[int, int, float]:
    """Which frame a result is (not the result itself: a kept JPEG must not keep its frame alive)."""
    frame = result.frame
    return frame.session, frame.index, frame.wall_time


class History:
    """One sample a second: per source, fps and capture-to-result latency p50/p99 in ms."""

    def __init__(self, publish: Callable[[str, dict[str, Any]], None], clock: Callable[[], float] = time.monotonic) -> None:
        self.samples: deque[dict[str, Any]] = deque(maxlen=HISTORY_S)
        self.clock = clock
        self._publish = publish
        self._started = clock()
        self._latencies: dict[str, list[float]] = {}

    def count(self, result: Result) -> None:
        self.roll()
        self._latencies.setdefault(result.source_id, []).append(time.time() - result.frame.wall_time)

    def roll(self) -> None:
        """Close the second that ended (seconds with no frame at all leave no sample)."""
        now = self.clock()
        elapsed = now - self._started
        if elapsed < 1.0:
            return
        sample = {"t": round(time.time(), 3), "sources": {
            source_id: _second(latencies, elapsed) for source_id, latencies in self._latencies.items()
        }}
        self._started, self._latencies = now, {}
        if sample["sources"]:
            self.samples.append(sample)
            self._publish("sample", sample)


def _second(latencies: list[float], elapsed: float) -> dict[str, float]:
    p50, p99 = np.percentile(np.asarray(latencies) * 1000.0, [50, 99])
    return {"fps": round(len(latencies) / elapsed, 2), "p50_ms": round(float(p50), 1), "p99_ms": round(float(p99), 1)}


class Feed:
    """Server-sent events to every listener, each through its own bounded queue."""

    def __init__(self) -> None:
        self.recent: deque[bytes] = deque(maxlen=RECENT_EVENTS)
        self.dropped = 0  # listeners cut off for falling behind
        self._listeners: dict[MemoryObjectSendStream[bytes], Callable[[], None]] = {}
        self._closed = False

    @property
    def listeners(self) -> int:
        return len(self._listeners)

    def publish(self, kind: str, body: dict[str, Any]) -> None:
        """Queue one message for every listener; never waits (a listener that is full is dropped)."""
        message = b"event: %s\ndata: %s\n\n" % (kind.encode(), _encode_json(body))
        if kind == "event":
            self.recent.append(message)
        for send in list(self._listeners):
            try:
                send.send_nowait(message)
            except anyio.WouldBlock:
                self.dropped += 1
                log.info("live page: a listener fell %d messages behind: dropped", LISTENER_QUEUE)
                self._drop(send)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._drop(send)

    def listen(self, backlog: list[bytes], hang_up: Callable[[], None] = lambda: None) -> MemoryObjectReceiveStream[bytes]:
        """A new listener's queue, holding `backlog` first; closed at once when the feed is. `hang_up`
        is called when the listener is dropped or the feed closes (to cancel a write stuck on it)."""
        send, receive = anyio.create_memory_object_stream[bytes](LISTENER_QUEUE + len(backlog))
        for message in backlog:
            send.send_nowait(message)
        if self._closed:
            send.close()
        else:
            self._listeners[send] = hang_up
        return receive

    def close(self) -> None:
        """End every listener's stream (the server is stopping)."""
        self._closed = True
        for send in list(self._listeners):
            self._drop(send)

    def _drop(self, send: MemoryObjectSendStream[bytes]) -> None:
        hang_up = self._listeners.pop(send, None)
        send.close()
        if hang_up is not None:
            hang_up()


def history_message(samples: list[dict[str, Any]]) -> bytes:
    return b"event: history\ndata: %s\n\n" % _encode_json({"samples": samples})
