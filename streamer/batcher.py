"""Form batches across sources.

`Batcher` takes frames from every source's queue in turn (round robin, so no source starves) and
hands out a batch when it holds `max_batch_size` frames or its first frame has waited `max_wait_ms`
since capture, whichever comes first, as Triton's dynamic batcher does. Turning a batch into the
model's input tensor (letterboxing) is the engine's: `streamer.engine.preprocess`.
"""

from __future__ import annotations

import time

import anyio

from .frames import Frame
from .sources.queue import FrameQueue
from .wakeup import Wakeup

__all__ = ["Batcher"]


class Batcher:
    """Round-robin batches over a changing set of frame queues."""

    def __init__(self, max_batch_size: int, max_wait_ms: float, keep_alive: bool = False) -> None:
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000
        self.keep_alive = keep_alive
        self._queues: list[FrameQueue] = []
        self._next = 0
        self._ready = Wakeup()

    def add_queue(self, queue: FrameQueue) -> None:
        self._queues.append(queue)
        self.notify()

    def close(self) -> None:
        """End once every queue is drained, even when kept alive for sources added later."""
        self.keep_alive = False
        self.notify()

    def notify(self) -> None:
        """Called by a queue when a frame arrives or it finishes."""
        self._ready.notify()

    async def next_batch(self) -> list[Frame] | None:
        """The next batch, or None once every queue is finished and empty."""
        batch = await self._first_frames()
        if batch is None:
            return None
        waited = time.time() - batch[0].wall_time  # the deadline counts from the frame's capture
        with anyio.move_on_after(self.max_wait - waited):
            while len(batch) < self.max_batch_size and not self._all_exhausted():
                await self._ready.wait()
                batch += self._take(self.max_batch_size - len(batch))
        return batch

    async def _first_frames(self) -> list[Frame] | None:
        while True:
            batch = self._take(self.max_batch_size)
            if batch:
                return batch
            if self._all_exhausted():
                return None
            await self._ready.wait()

    def _take(self, limit: int) -> list[Frame]:
        """Up to `limit` frames, one per queue per round, starting after the last queue served."""
        taken: list[Frame] = []
        count = len(self._queues)
        empty_in_a_row = 0
        while len(taken) < limit and count and empty_in_a_row < count:
            queue = self._queues[self._next % count]
            self._next = (self._next + 1) % count
            frame = queue.get_nowait()
            if frame is None:
                empty_in_a_row += 1
            else:
                taken.append(frame)
                empty_in_a_row = 0
        return taken

    def _all_exhausted(self) -> bool:
        self._queues = [queue for queue in self._queues if not queue.exhausted]
        return not self._queues and not self.keep_alive
