"""A bounded per-source frame queue with a policy for when it is full.

`block`: the producer waits for room, so nothing is lost (files). `latest`: the oldest frame is
dropped and counted, so a live camera never falls behind; the consumer takes the newest frame, or,
when it says which frames are still in time, the oldest of those (frames then go in capture order
while they can make their budget, and only late ones give way to newer ones). The queue lives on the event loop; decode
threads reach it through `anyio.from_thread.run`.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Callable, Literal

from ..frames import Frame
from ..wakeup import Wakeup


class FrameQueue:
    """Frames of one source waiting for the batcher."""

    def __init__(
        self,
        source_id: str,
        maxsize: int,
        policy: Literal["block", "latest"],
        on_ready: Callable[[], None] = lambda: None,
        staleness_s: float | None = None,
    ) -> None:
        self.source_id = source_id
        self.maxsize = maxsize
        self.policy = policy
        self.staleness_s = staleness_s
        self.stale = 0
        self.dropped = 0
        self.accepted = 0
        self.finished = False
        self.interval_s: float | None = None  # between the captures of its frames, a moving average
        self._last_capture: float | None = None
        self._items: deque[Frame] = deque()
        self._on_ready = on_ready
        self._room = Wakeup()

    def __len__(self) -> int:
        return len(self._items)

    def try_put(self, frame: Frame) -> bool | None:
        """Queue a frame without waiting: None when a `block` queue is full (then await `put`)."""
        if not self.finished and self.policy == "block" and len(self._items) >= self.maxsize:
            return None
        return self._append(frame)

    async def put(self, frame: Frame) -> bool:
        """Queue a frame; False once the queue was finished (the producer should stop)."""
        while (queued := self.try_put(frame)) is None:
            await self._room.wait()
        return queued

    def _append(self, frame: Frame) -> bool:
        if self.finished:
            return False
        if len(self._items) >= self.maxsize:
            self._items.popleft()
            self.dropped += 1
        self._items.append(frame)
        self.accepted += 1
        self._learn_interval(frame.wall_time)
        self._on_ready()
        return True

    def _learn_interval(self, captured: float) -> None:
        last, self._last_capture = self._last_capture, captured
        if last is not None and captured > last:
            gap = captured - last
            self.interval_s = gap if self.interval_s is None else self.interval_s + 0.2 * (gap - self.interval_s)

    def next_capture(self) -> float | None:
        """When its next frame should be captured (wall clock), from the interval so far; None
        while unknown or once finished."""
        if self.finished or self.interval_s is None or self._last_capture is None:
            return None
        return self._last_capture + self.interval_s

    def get_nowait(self, in_time: Callable[[Frame], bool] | None = None) -> Frame | None:
        """The next frame: the oldest under `block`; under `latest`, the oldest for which `in_time`
        holds, else the newest (older ones are dropped and counted: a live source is processed in
        capture order while its frames can make their budget, at its freshest once they cannot).
        Frames older than the staleness budget are dropped (and counted as stale) on the way."""
        frame = self.peek(in_time)
        if frame is not None:
            self._items.popleft()
            self._wake_putters()
        return frame

    def peek(self, in_time: Callable[[Frame], bool] | None = None) -> Frame | None:
        """The frame `get_nowait(in_time)` would return, left in the queue (what it drops on the way,
        it drops)."""
        while self.policy == "latest" and len(self._items) > 1 and not (in_time and in_time(self._items[0])):
            self._items.popleft()
            self.dropped += 1
        while self._items:
            frame = self._items[0]
            if self.staleness_s is None or time.time() - frame.wall_time <= self.staleness_s:
                return frame
            self._items.popleft()
            self._wake_putters()
            self.stale += 1
        return None

    def finish(self) -> None:
        """No more frames will come: what is queued is still taken, further puts are refused."""
        self.finished = True
        self._wake_putters()
        self._on_ready()

    def _wake_putters(self) -> None:
        """Wake every waiting putter; each re-checks for room."""
        self._room.notify()

    @property
    def exhausted(self) -> bool:
        return self.finished and not self._items
