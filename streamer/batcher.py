"""Form batches across sources.

`Batcher` takes frames from every source's queue in turn. A
batch whose first frame comes from a queue without a latency budget (a file under `block`) is
batched for throughput: it leaves when it holds `max_batch_size` frames or its first frame has
waited `max_wait_ms` since capture, whichever comes first, as Triton's dynamic batcher does.

A live source's queue (policy `latest`) has a latency budget (`latency_budget_ms`): each frame
should reach its result within that time of its capture. Its batches are sized by `BatchCosts`
(streamer/batch_costs.py), which learns what a batch of each size costs while the pipeline runs and
picks the size and wait that give the most frames/s within the budget. A live frame is taken only
while it can still make its budget (its age plus the batch's cost), a queue's frames in capture
order while they can; a late one stays in its queue, where its source's next frame replaces it,
and the worker takes a fresher one instead. When only
late frames wait, the worker waits for the next capture a source is due (so a frame is processed
within its budget or not at all, even when cameras send in bursts); only when that frame does not
come, or comes late too (a machine too loaded to hand frames over in time), or no source's next
capture can be told, does it take the freshest late frame. Where not even a fresh frame could make
the budget (a model slower than it), frames are taken as they come. Queues take turns, the one served
least recently first, so no source starves.
docs/batching.md explains the rule.
Turning a batch into the model's input tensor (letterboxing) is the engine's:
`streamer.engine.preprocess`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Literal

import anyio

from .batch_costs import BatchCosts, CostKey
from .frames import Frame
from .sources.queue import FrameQueue
from .wakeup import Wakeup

__all__ = ["Batcher"]

FRESH_FRAME_SLACK_S = 0.005  # beyond a due capture: the decode and the hop to the event loop


def frame_size(frame: Frame) -> CostKey:
    """The default cost key (the runner gives the model's): a batch costs what its frames' size costs."""
    return CostKey("", frame.width, frame.height)


@dataclass
class _Plan:
    """The batch being formed: how many frames, until when, and which frames still fit it."""

    limit: int
    deadline: float  # wall clock (time.time()) when it leaves unfilled
    cost_s: float | None  # the expected cost of the batch, for the live frames' budgets


class Batcher:
    """Round-robin batches over a changing set of frame queues."""

    def __init__(
        self,
        max_batch_size: int,
        max_wait_ms: float,
        keep_alive: bool = False,
        *,
        costs: BatchCosts | None = None,
        cost_key: Callable[[Frame], CostKey] = frame_size,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000
        self.keep_alive = keep_alive
        self.costs = costs or BatchCosts(max_batch_size)
        self.cost_key = cost_key
        self.clock = clock  # the clock frames' wall_time is on
        self._queues: list[FrameQueue] = []
        self._budgets: dict[int, float | Literal["auto"]] = {}  # id(queue) -> seconds, for latency batching
        self._last_served: dict[int, int] = {}  # id(queue) -> when it last handed over a frame (a count)
        self._served = 0
        self._ready = Wakeup()

    def add_queue(self, queue: FrameQueue, latency_budget_ms: float | Literal["auto"] | None = None) -> None:
        """Batch `queue`'s frames for throughput (None), or within `latency_budget_ms` of their
        capture ("auto": `BatchCosts.auto_budget`)."""
        self._queues.append(queue)
        if latency_budget_ms is not None:
            self._budgets[id(queue)] = "auto" if latency_budget_ms == "auto" else latency_budget_ms / 1000
        self.notify()

    def close(self) -> None:
        """End once every queue is drained, even when kept alive for sources added later."""
        self.keep_alive = False
        self.notify()

    def notify(self) -> None:
        """Called by a queue when a frame arrives or it finishes."""
        self._ready.notify()

    def batch_done(self, frames: list[Frame], seconds: float) -> None:
        """The model took `seconds` for this batch: what the cost model learns from."""
        self.costs.observe(self.cost_key(frames[0]), len(frames), seconds)

    async def next_batch(self) -> list[Frame] | None:
        """The next batch, or None once every queue is finished and empty."""
        first = await self._first_frame()
        if first is None:
            return None
        plan = self._plan(*first)
        batch = [first[1]]
        with anyio.move_on_after(plan.deadline - self.clock()):
            while True:
                batch += [frame for _, frame in self._take(plan.limit - len(batch), plan)]
                if len(batch) >= plan.limit or self._all_exhausted():
                    break
                await self._ready.wait()
        return batch

    def _plan(self, queue: FrameQueue, first: Frame) -> _Plan:
        """Throughput batching for a frame without a budget; the cost model's choice for a live one."""
        if id(queue) not in self._budgets:
            return _Plan(self.max_batch_size, first.wall_time + self.max_wait, None)
        key, now, budget = self.cost_key(first), self.clock(), self._budget(queue, first)
        if budget is None:  # "auto" before the first batch: learn what one frame costs
            return _Plan(1, now, None)
        choice = self.costs.choose(key, now - first.wall_time, budget, self.max_wait, 1 + self._waiting())
        return _Plan(choice.size, now + choice.wait_s, self.costs.cost(key, choice.size))

    async def _first_frame(self) -> tuple[FrameQueue, Frame] | None:
        """The first frame that fits a batch of one. When only live frames too late for their
        budget wait, the worker waits for the next frame a source is due (its source's next replaces
        a late frame under `latest`); once that wait is over with no frame that fits, or when no
        source's next capture can be told, it takes the freshest late frame."""
        waited_for: float | None = None  # the deadline (anyio's clock) of the wait for a fresh frame
        while True:
            taken = self._take(1, None)
            if taken:
                return taken[0]
            if self._all_exhausted():
                return None
            late = self._freshest()
            if late is None:
                waited_for = None
                await self._ready.wait()
                continue
            if waited_for is None:
                waited_for = anyio.current_time() + self._wait_for_fresh_frame()
            left = waited_for - anyio.current_time()
            if left <= 0:
                late[0].get_nowait()
                self._mark_served(late[0])
                return late
            with anyio.move_on_after(left):
                await self._ready.wait()

    def _wait_for_fresh_frame(self) -> float:
        """How long to wait for a fresh frame: until the next capture a live source is due (plus a
        little for the decode and the hop); 0 when no source can tell."""
        due = [when for queue in self._queues if id(queue) in self._budgets and (when := queue.next_capture())]
        if not due:
            return 0.0
        return max(0.0, min(due) - self.clock()) + FRESH_FRAME_SLACK_S

    def _take(self, limit: int, plan: _Plan | None) -> list[tuple[FrameQueue, Frame]]:
        """Up to `limit` frames that fit (see `_fits`): in rounds of one per queue, the queue served
        least recently first, so no source starves."""
        taken: list[tuple[FrameQueue, Frame]] = []
        while len(taken) < limit:
            queues = self._by_last_served()
            ready = [(queue, frame) for queue in queues if (frame := queue.peek(self._in_time(queue, plan)))]
            fitting = [queue for queue, frame in ready if self._fits(queue, frame, plan)]
            if not fitting:
                return taken
            for queue in fitting[: limit - len(taken)]:
                if (frame := queue.get_nowait(self._in_time(queue, plan))) is not None:
                    self._mark_served(queue)
                    taken.append((queue, frame))
        return taken

    def _in_time(self, queue: FrameQueue, plan: _Plan | None) -> Callable[[Frame], bool]:
        """For a `latest` queue: whether a frame older than its newest still makes its budget, and
        so is taken first (`FrameQueue.get_nowait`)."""
        return lambda frame: self._makes_budget(queue, frame, plan) is True

    def _mark_served(self, queue: FrameQueue) -> None:
        self._served += 1
        self._last_served[id(queue)] = self._served

    def _freshest(self) -> tuple[FrameQueue, Frame] | None:
        """The queue holding the most recently captured frame, and that frame (None: all are empty)."""
        waiting = [(frame.wall_time, i, frame) for i, queue in enumerate(self._queues) if (frame := queue.peek())]
        if not waiting:
            return None
        _, i, frame = max(waiting, key=lambda item: item[:2])
        return self._queues[i], frame

    def _by_last_served(self) -> list[FrameQueue]:
        return sorted(self._queues, key=lambda queue: self._last_served.get(id(queue), 0))

    def _fits(self, queue: FrameQueue, frame: Frame, plan: _Plan | None) -> bool:
        """Whether `frame` can still make its budget in a batch of `plan` (None: a batch of one).

        Frames without a budget always fit; so do those of a finished queue (they are drained) and
        those whose budget not even a fresh frame could make (the model is slower than it)."""
        return queue.finished or self._makes_budget(queue, frame, plan) is not False

    def _makes_budget(self, queue: FrameQueue, frame: Frame, plan: _Plan | None) -> bool | None:
        """Whether `frame`'s age plus the batch's cost keeps within its budget; None when that cannot
        be told (no budget, no cost known yet, or a budget not even a fresh frame could make)."""
        budget = self._budget(queue, frame)
        if budget is None:
            return None
        one = self.costs.cost(self.cost_key(frame), 1)
        cost = one if plan is None or plan.cost_s is None else plan.cost_s
        if cost is None or (one is not None and one > budget):
            return None
        return self.clock() - frame.wall_time + cost <= budget

    def _budget(self, queue: FrameQueue, frame: Frame) -> float | None:
        """The queue's latency budget in seconds ("auto" resolved from the costs); None: throughput."""
        budget = self._budgets.get(id(queue))
        if budget == "auto":
            return self.costs.auto_budget(self.cost_key(frame))
        return budget

    def _waiting(self) -> int:
        """Frames the queues could hand over now (a `latest` queue counted as one: its older frames
        go only while in time, which the batch's size decides)."""
        return sum(min(1, len(queue)) if queue.policy == "latest" else len(queue) for queue in self._queues)

    def _all_exhausted(self) -> bool:
        self._queues = [queue for queue in self._queues if not queue.exhausted]
        kept = {id(queue) for queue in self._queues}
        self._budgets = {key: budget for key, budget in self._budgets.items() if key in kept}
        self._last_served = {key: served for key, served in self._last_served.items() if key in kept}
        return not self._queues and not self.keep_alive
