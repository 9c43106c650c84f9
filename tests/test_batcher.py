"""Batcher: batches by size and deadline, round robin across sources; live sources within their latency budget."""

from __future__ import annotations

import time
from typing import Callable

import anyio
import numpy as np

from streamer.batch_costs import MIN_SAMPLES, BatchCosts, CostKey
from streamer.batcher import Batcher
from streamer.frames import Frame
from streamer.sources.queue import FrameQueue


def frame(source_id: str, index: int, width: int = 4, height: int = 4, captured: float | None = None) -> Frame:
    wall_time = time.time() if captured is None else captured
    return Frame(source_id, index, None, wall_time, image=np.zeros((height, width, 3), np.uint8))


async def filled_queue(batcher: Batcher, source_id: str, count: int, maxsize: int = 16) -> FrameQueue:
    queue = FrameQueue(source_id, maxsize, "block", on_ready=batcher.notify)
    batcher.add_queue(queue)
    for i in range(count):
        await queue.put(frame(source_id, i))
    return queue


def labels(batch: list[Frame] | None) -> list[str]:
    assert batch is not None
    return [f"{f.source_id}{f.index}" for f in batch]


async def batch_once_blocked(batcher: Batcher, *actions: Callable[[], object]) -> list[Frame] | None:
    """The batch `next_batch` returns when `actions` run, in order, once it waits (it returned none before)."""
    batches: list[list[Frame] | None] = []

    async def take() -> None:
        batches.append(await batcher.next_batch())

    with anyio.fail_after(1):
        async with anyio.create_task_group() as group:
            group.start_soon(take)
            await anyio.wait_all_tasks_blocked()
            assert batches == []  # nothing handed over before the actions
            for action in actions:
                action()
    return batches[0]


# --- Batcher: size ----------------------------------------------------------------------------------


async def test_next_batch_when_queue_holds_enough_returns_max_batch_size() -> None:
    batcher = Batcher(max_batch_size=4, max_wait_ms=10_000)
    await filled_queue(batcher, "a", 6)

    assert labels(await batcher.next_batch()) == ["a0", "a1", "a2", "a3"]


async def test_next_batch_when_full_returns_before_the_deadline() -> None:
    batcher = Batcher(max_batch_size=3, max_wait_ms=10_000)
    await filled_queue(batcher, "a", 3)

    started = anyio.current_time()
    batch = await batcher.next_batch()

    assert len(batch or []) == 3
    assert anyio.current_time() - started < 1.0


async def test_next_batch_round_robins_across_queues() -> None:
    batcher = Batcher(max_batch_size=6, max_wait_ms=10_000)
    await filled_queue(batcher, "a", 3)
    await filled_queue(batcher, "b", 3)

    assert labels(await batcher.next_batch()) == ["a0", "b0", "a1", "b1", "a2", "b2"]


async def test_next_batch_round_robin_resumes_after_the_last_queue_served() -> None:
    batcher = Batcher(max_batch_size=3, max_wait_ms=10_000)
    await filled_queue(batcher, "a", 4)
    await filled_queue(batcher, "b", 4)

    batches = [labels(await batcher.next_batch()) for _ in range(2)]

    assert batches == [["a0", "b0", "a1"], ["b1", "a2", "b2"]]


async def test_next_batch_when_one_queue_runs_dry_takes_the_rest_from_the_others() -> None:
    batcher = Batcher(max_batch_size=4, max_wait_ms=10_000)
    await filled_queue(batcher, "a", 4)
    await filled_queue(batcher, "b", 1)

    assert labels(await batcher.next_batch()) == ["a0", "b0", "a1", "a2"]


# --- Batcher: deadline ------------------------------------------------------------------------------


async def test_next_batch_releases_a_lone_frame_after_max_wait() -> None:
    batcher = Batcher(max_batch_size=4, max_wait_ms=50)
    started = anyio.current_time()
    await filled_queue(batcher, "a", 1)

    batch = await batcher.next_batch()
    elapsed = anyio.current_time() - started

    assert labels(batch) == ["a0"]
    assert elapsed >= 0.05 - 1e-3
    assert elapsed < 5.0


async def test_next_batch_when_the_first_frame_already_waited_out_the_deadline_releases_at_once() -> None:
    batcher = Batcher(max_batch_size=4, max_wait_ms=10_000)
    queue = FrameQueue("a", 8, "block", batcher.notify)
    batcher.add_queue(queue)
    await queue.put(frame("a", 0, captured=time.time() - 11))

    started = anyio.current_time()
    batch = await batcher.next_batch()

    assert labels(batch) == ["a0"]
    assert anyio.current_time() - started < 1.0


async def test_next_batch_includes_frames_put_while_it_waits() -> None:
    batcher = Batcher(max_batch_size=3, max_wait_ms=10_000)
    queue = await filled_queue(batcher, "a", 1)
    batches: list[list[Frame] | None] = []

    async def take() -> None:
        batches.append(await batcher.next_batch())

    started = anyio.current_time()
    async with anyio.create_task_group() as group:
        group.start_soon(take)
        await anyio.wait_all_tasks_blocked()
        assert batches == []  # holding a0, waiting for more

        await queue.put(frame("a", 1))
        await anyio.wait_all_tasks_blocked()
        assert batches == []  # two of three

        await queue.put(frame("a", 2))

    assert labels(batches[0]) == ["a0", "a1", "a2"]
    assert anyio.current_time() - started < 1.0  # full, so not held to the 10 s deadline


async def test_next_batch_when_all_queues_are_empty_waits_for_a_first_frame() -> None:
    batcher = Batcher(max_batch_size=2, max_wait_ms=10_000)
    queue_a = await filled_queue(batcher, "a", 0)
    queue_b = await filled_queue(batcher, "b", 0)

    batch = await batch_once_blocked(
        batcher, lambda: queue_b.try_put(frame("b", 0)), lambda: queue_a.try_put(frame("a", 0))
    )

    assert sorted(labels(batch)) == ["a0", "b0"]


# --- Batcher: the end -------------------------------------------------------------------------------


async def test_next_batch_when_all_queues_finished_and_empty_returns_none() -> None:
    batcher = Batcher(max_batch_size=2, max_wait_ms=10)
    for source_id in ("a", "b"):
        (await filled_queue(batcher, source_id, 0)).finish()

    assert await batcher.next_batch() is None


async def test_next_batch_drains_finished_queues_before_returning_none() -> None:
    batcher = Batcher(max_batch_size=2, max_wait_ms=10_000)
    queue = await filled_queue(batcher, "a", 3)
    queue.finish()

    with anyio.fail_after(1):  # nothing more can come, so no batch waits out its deadline
        batches = [await batcher.next_batch() for _ in range(3)]

    assert [labels(b) if b else None for b in batches] == [["a0", "a1"], ["a2"], None]


async def test_next_batch_returns_none_when_the_last_queue_finishes_while_waiting() -> None:
    batcher = Batcher(max_batch_size=2, max_wait_ms=10_000)
    queue = await filled_queue(batcher, "a", 0)

    assert await batch_once_blocked(batcher, queue.finish) is None


async def test_next_batch_keeps_waiting_while_one_queue_is_still_open() -> None:
    batcher = Batcher(max_batch_size=2, max_wait_ms=10_000)
    (await filled_queue(batcher, "a", 0)).finish()
    open_queue = await filled_queue(batcher, "b", 0)

    batch = await batch_once_blocked(batcher, lambda: open_queue.try_put(frame("b", 0)), open_queue.finish)

    assert labels(batch) == ["b0"]


# --- Batcher: live queues and their latency budget --------------------------------------------------

NOW = 1_000.0  # the injected clock's time; frames are captured `age` seconds before it


def costed(costs_s: dict[int, float], max_batch_size: int = 4) -> Batcher:
    """A batcher on a frozen clock whose cost model has seen batches of each size at these seconds."""
    costs = BatchCosts(max_batch_size)
    for size, seconds in costs_s.items():
        for _ in range(MIN_SAMPLES):  # enough to compare sizes
            costs.observe(CostKey("", 4, 4), size, seconds)
    return Batcher(max_batch_size, max_wait_ms=10, costs=costs, clock=lambda: NOW)


def live_queue(batcher: Batcher, source_id: str, ages_s: list[float], budget_ms: float | str = 100) -> FrameQueue:
    queue = FrameQueue(source_id, 2, "latest", on_ready=batcher.notify)
    batcher.add_queue(queue, budget_ms)
    for i, age in enumerate(ages_s):
        queue.try_put(frame(source_id, i, captured=NOW - age))
    return queue


async def test_next_batch_when_batching_costs_linear_time_gives_live_sources_batches_of_one():
    batcher = costed({1: 0.020, 2: 0.040, 3: 0.060, 4: 0.080})
    for source_id in "abcd":
        live_queue(batcher, source_id, [0.0])

    with anyio.fail_after(1):
        batches = [labels(await batcher.next_batch()) for _ in range(4)]

    assert batches == [["a0"], ["b0"], ["c0"], ["d0"]]
    assert batcher.costs.last is not None and batcher.costs.last.size == 1


async def test_next_batch_when_batches_are_nearly_free_fills_a_live_batch_up_to_the_budget():
    batcher = costed({1: 0.010, 2: 0.0105, 3: 0.011, 4: 0.0115})
    for source_id in "abcd":
        live_queue(batcher, source_id, [0.0])

    with anyio.fail_after(1):
        assert labels(await batcher.next_batch()) == ["a0", "b0", "c0", "d0"]


async def test_next_batch_skips_a_live_frame_too_late_for_its_budget():
    batcher = costed({1: 0.040})
    live_queue(batcher, "late", [0.070])  # 70 ms old + 40 ms > 100 ms
    live_queue(batcher, "fresh", [0.010])

    with anyio.fail_after(1):
        assert labels(await batcher.next_batch()) == ["fresh0"]


async def test_next_batch_takes_a_live_queues_frames_in_capture_order_while_they_make_the_budget():
    batcher = costed({1: 0.040, 2: 0.080})  # 100 ms budget: a frame up to 60 ms old makes it
    queue = live_queue(batcher, "cam", [0.050, 0.010])  # both in time

    with anyio.fail_after(1):
        batches = [labels(await batcher.next_batch()) for _ in range(2)]

    assert batches == [["cam0"], ["cam1"]]  # the older first, and neither lost
    assert queue.dropped == 0


async def test_next_batch_drops_an_older_live_frame_too_late_for_the_newer_one_behind_it():
    batcher = costed({1: 0.040, 2: 0.080})
    queue = live_queue(batcher, "cam", [0.070, 0.010])  # the older one would be 110 ms late

    with anyio.fail_after(1):
        assert labels(await batcher.next_batch()) == ["cam1"]
    assert queue.dropped == 1


async def test_next_batch_when_only_a_late_frame_waits_for_its_sources_next_frame():
    batcher = costed({1: 0.600, 2: 1.2})  # a budget of 650 ms leaves a frame 50 ms to be taken
    queue = live_queue(batcher, "cam", [0.250, 0.100], budget_ms=650)  # one each 150 ms: next due in 50

    # The late frame is not taken: the next one is.
    batch = await batch_once_blocked(batcher, lambda: queue.try_put(frame("cam", 2, captured=NOW)))

    assert labels(batch) == ["cam2"]
    assert queue.dropped == 2  # the late frames, replaced


async def test_next_batch_when_only_late_frames_wait_holds_out_for_the_next_capture_even_when_it_is_far():
    batcher = costed({1: 0.040})  # 100 ms budget: a frame over 60 ms old is late
    queue = live_queue(batcher, "cam", [0.250, 0.070])  # one each 180 ms: next due in 110, over half a batch

    # Not the late frame, whose result would be 110 ms late: the next capture.
    batch = await batch_once_blocked(batcher, lambda: queue.try_put(frame("cam", 2, captured=NOW)))

    assert labels(batch) == ["cam2"]


async def test_next_batch_when_the_model_is_slower_than_the_budget_takes_frames_as_they_come():
    batcher = costed({1: 0.150})
    live_queue(batcher, "cam", [0.070])

    with anyio.fail_after(1):
        assert labels(await batcher.next_batch()) == ["cam0"]


async def test_next_batch_serves_the_live_queue_served_least_recently_first():
    batcher = costed({1: 0.020, 2: 0.040})
    a, b = live_queue(batcher, "a", [0.0]), live_queue(batcher, "b", [0.0])
    first = labels(await batcher.next_batch())
    a.try_put(frame("a", 1, captured=NOW))  # a (just served) and b both hold a frame now

    second = labels(await batcher.next_batch())

    assert (first, second) == (["a0"], ["b0"])
    assert b.peek() is None and a.peek() is not None


async def test_next_batch_with_an_auto_budget_before_any_cost_is_known_runs_one_frame():
    batcher = Batcher(4, max_wait_ms=10_000, clock=lambda: NOW)
    for source_id in "ab":
        live_queue(batcher, source_id, [0.5], budget_ms="auto")

    with anyio.fail_after(1):  # not held to max_wait: a live batch of one leaves at once
        assert labels(await batcher.next_batch()) == ["a0"]


async def test_next_batch_with_an_auto_budget_uses_one_and_a_half_batches_of_one():
    batcher = costed({1: 0.040})  # auto budget: 60 ms
    live_queue(batcher, "late", [0.021], budget_ms="auto")  # 21 + 40 > 60
    live_queue(batcher, "fresh", [0.019], budget_ms="auto")

    with anyio.fail_after(1):
        assert labels(await batcher.next_batch()) == ["fresh0"]


async def test_next_batch_when_no_fresh_frame_is_due_soon_takes_the_freshest_late_one_at_once():
    batcher = costed({1: 0.040, 2: 0.080})
    live_queue(batcher, "older", [0.090])  # one frame each: nothing says when the next comes
    live_queue(batcher, "newer", [0.080])

    with anyio.fail_after(1):
        assert labels(await batcher.next_batch()) == ["newer0"]


async def test_next_batch_when_the_fresh_frame_due_does_not_come_takes_the_freshest_late_one():
    batcher = costed({1: 0.600, 2: 1.2})
    live_queue(batcher, "cam", [0.250, 0.100], budget_ms=650)  # next due in 50 ms; it never comes

    started = anyio.current_time()
    with anyio.fail_after(1):
        batch = await batcher.next_batch()

    assert labels(batch) == ["cam1"]
    assert anyio.current_time() - started >= 0.050
