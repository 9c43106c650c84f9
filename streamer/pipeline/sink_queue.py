"""Each sink's own bounded queue, so a slow sink never stalls inference or the other sinks.

`block` (the default) makes the pipeline wait for the sink: nothing is lost, and a sink that keeps
up costs nothing. `drop_oldest` never waits: when full, the oldest waiting result is dropped and
counted. Sinks that must neither wait nor lose (webhook, MQTT) spool internally and choose `block`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Literal

import anyio

from ..errors import SinkWriteError
from ..frames import Result
from ..sinks.base import Item, Sink
from ..wakeup import Wakeup
from .summary import SinkReport

Overflow = Literal["block", "drop_oldest"]
IDLE_AFTER_S = 0.25  # a sink with nothing new for this long is told it is idle (it writes out what it holds)


class SinkQueue:
    def __init__(self, maxsize: int, overflow: Overflow = "block", report: SinkReport | None = None) -> None:
        self.maxsize = maxsize
        self.overflow = overflow
        self.report = report or SinkReport("")
        self._items: deque[Result] = deque()
        self._closed = False
        self._changed = Wakeup()

    def __len__(self) -> int:
        return len(self._items)

    async def put(self, result: Result) -> None:
        while self.overflow == "block" and len(self._items) >= self.maxsize:
            await self._changed.wait()
        if len(self._items) >= self.maxsize:
            self._items.popleft()
            self.report.dropped += 1
        self._items.append(result)
        self._changed.notify()

    def close(self) -> None:
        """No more results: the consumer ends once it has taken what is queued."""
        self._closed = True
        self._changed.notify()

    async def _next(self, sink: Sink) -> Result | None:
        """The next item, telling `sink` it is idle once nothing has come for IDLE_AFTER_S."""
        if not self._items and not self._closed:
            with anyio.move_on_after(IDLE_AFTER_S):
                return await self.get()  # cancelled only while waiting: no item is taken and lost
            await sink.idle()
        return await self.get()

    async def get(self) -> Result | None:
        """The next result, or None once closed and empty."""
        while not self._items:
            if self._closed:
                return None
            await self._changed.wait()
        result = self._items.popleft()
        self._changed.notify()
        return result

    async def feed(self, sink: Sink, wrote: Callable[[Item], None] | None = None) -> None:
        """Hand `sink` (open) every item, one at a time, until closed and empty; count what it wrote.

        A SinkWriteError fails that item only (counted, its message kept): the next one still goes.
        """
        while (item := await self._next(sink)) is not None:
            try:
                await sink.write(item)
            except SinkWriteError as exc:
                self.report.failed += 1
                self.report.last_error = exc.message
                continue
            self.report.written += 1
            if wrote is not None:
                wrote(item)
