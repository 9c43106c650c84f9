"""FrameQueue: `block` never loses a frame, `latest` keeps the newest (or the oldest still in time), finish() ends the stream."""

from __future__ import annotations

import anyio
import numpy as np
import pytest

from streamer.frames import Frame
from streamer.sources.queue import FrameQueue


def frame(index: int) -> Frame:
    return Frame("s", index, None, 0.0, image=np.zeros((2, 2, 3), np.uint8))


def drain(queue: FrameQueue) -> list[int]:
    taken = []
    while (item := queue.get_nowait()) is not None:
        taken.append(item.index)
    return taken


class PutRecorder:
    """Runs one put in a task and records whether (and with what) it returned."""

    def __init__(self) -> None:
        self.returned: bool | None = None

    async def put(self, queue: FrameQueue, item: Frame) -> None:
        self.returned = await queue.put(item)


# --- block ----------------------------------------------------------------------------------------


async def test_block_queue_delivers_every_frame_in_order_to_a_slower_consumer() -> None:
    queue = FrameQueue("s", maxsize=3, policy="block")
    count = 50
    received: list[int] = []

    async def produce() -> None:
        for i in range(count):
            assert await queue.put(frame(i))
        queue.finish()

    async def consume() -> None:
        while not queue.exhausted:
            await anyio.wait_all_tasks_blocked()  # let the producer fill the queue first
            received.extend(drain(queue))

    async with anyio.create_task_group() as group:
        group.start_soon(produce)
        group.start_soon(consume)

    assert received == list(range(count))
    assert queue.dropped == 0 and queue.accepted == count


async def test_block_queue_never_holds_more_than_maxsize() -> None:
    queue = FrameQueue("s", maxsize=2, policy="block")
    sizes: list[int] = []

    async def produce() -> None:
        for i in range(10):
            await queue.put(frame(i))
        queue.finish()

    async with anyio.create_task_group() as group:
        group.start_soon(produce)
        while not queue.exhausted:
            await anyio.wait_all_tasks_blocked()
            sizes.append(len(queue))
            queue.get_nowait()

    assert max(sizes) == 2


async def test_block_put_when_full_waits_until_a_get_makes_room() -> None:
    queue = FrameQueue("s", maxsize=2, policy="block")
    await queue.put(frame(0))
    await queue.put(frame(1))
    recorder = PutRecorder()

    async with anyio.create_task_group() as group:
        group.start_soon(recorder.put, queue, frame(2))
        await anyio.wait_all_tasks_blocked()
        assert recorder.returned is None  # still waiting for room
        assert len(queue) == 2

        assert queue.get_nowait().index == 0  # type: ignore[union-attr]
        await anyio.wait_all_tasks_blocked()
        assert recorder.returned is True

    assert drain(queue) == [1, 2]
    assert queue.dropped == 0


async def test_block_put_when_room_returns_at_once() -> None:
    queue = FrameQueue("s", maxsize=2, policy="block")

    with anyio.fail_after(1):
        assert await queue.put(frame(0))

    assert len(queue) == 1 and queue.accepted == 1


async def test_block_queue_when_two_putters_wait_wakes_each_as_room_appears() -> None:
    queue = FrameQueue("s", maxsize=1, policy="block")
    await queue.put(frame(0))
    first, second = PutRecorder(), PutRecorder()

    async with anyio.create_task_group() as group:
        group.start_soon(first.put, queue, frame(1))
        group.start_soon(second.put, queue, frame(2))
        await anyio.wait_all_tasks_blocked()
        taken = []
        for _ in range(3):
            taken += drain(queue)
            await anyio.wait_all_tasks_blocked()
        group.cancel_scope.cancel()  # end a putter that was never woken instead of hanging

    assert (first.returned, second.returned) == (True, True)
    assert sorted(taken) == [0, 1, 2]


# --- latest ---------------------------------------------------------------------------------------


async def test_latest_queue_keeps_the_newest_frames_and_counts_drops() -> None:
    queue = FrameQueue("s", maxsize=3, policy="latest")

    with anyio.fail_after(1):  # never waits
        results = [await queue.put(frame(i)) for i in range(10)]

    assert results == [True] * 10
    assert len(queue) == 3  # the newest three wait
    assert drain(queue) == [9]  # and the consumer gets the freshest
    assert queue.dropped == 9 and queue.accepted == 10


async def test_latest_queue_hands_out_the_newest_frame_and_counts_the_older_ones() -> None:
    queue = FrameQueue("s", maxsize=3, policy="latest")
    for i in range(2):
        await queue.put(frame(i))

    assert queue.dropped == 0  # nothing lost while there was room
    assert drain(queue) == [1]
    assert queue.dropped == 1


async def test_latest_queue_when_told_which_frames_are_in_time_hands_out_the_oldest_of_them() -> None:
    queue = FrameQueue("s", maxsize=4, policy="latest")
    for i in range(4):
        await queue.put(frame(i))

    def in_time(item: Frame) -> bool:
        return item.index >= 1  # frame 0 is too late for its budget

    taken = [queue.get_nowait(in_time).index for _ in range(3)]  # type: ignore[union-attr]

    assert taken == [1, 2, 3]  # in capture order, from the oldest still in time
    assert queue.dropped == 1 and queue.get_nowait(in_time) is None


async def test_latest_queue_when_no_older_frame_is_in_time_hands_out_the_newest() -> None:
    queue = FrameQueue("s", maxsize=3, policy="latest")
    for i in range(3):
        await queue.put(frame(i))

    assert queue.get_nowait(lambda item: False).index == 2  # type: ignore[union-attr]
    assert queue.dropped == 2


async def test_block_queue_hands_out_frames_oldest_first() -> None:
    queue = FrameQueue("s", maxsize=3, policy="block")
    for i in range(3):
        await queue.put(frame(i))

    assert drain(queue) == [0, 1, 2] and queue.dropped == 0


# --- on_ready -------------------------------------------------------------------------------------


async def test_queue_calls_on_ready_for_each_put_and_for_finish() -> None:
    calls: list[int] = []
    queue = FrameQueue("s", maxsize=2, policy="latest", on_ready=lambda: calls.append(len(queue)))

    await queue.put(frame(0))
    await queue.put(frame(1))
    queue.finish()

    assert calls == [1, 2, 2]


# --- finish ---------------------------------------------------------------------------------------


async def test_put_after_finish_returns_false_and_queues_nothing() -> None:
    queue = FrameQueue("s", maxsize=2, policy="block")
    queue.finish()

    assert await queue.put(frame(0)) is False
    assert len(queue) == 0 and queue.accepted == 0


async def test_finish_wakes_a_blocked_putter_with_false() -> None:
    queue = FrameQueue("s", maxsize=1, policy="block")
    await queue.put(frame(0))
    recorder = PutRecorder()

    async with anyio.create_task_group() as group:
        group.start_soon(recorder.put, queue, frame(1))
        await anyio.wait_all_tasks_blocked()
        assert recorder.returned is None

        queue.finish()
        await anyio.wait_all_tasks_blocked()
        assert recorder.returned is False

    assert drain(queue) == [0]


async def test_finish_leaves_queued_frames_takeable() -> None:
    queue = FrameQueue("s", maxsize=4, policy="block")
    for i in range(3):
        await queue.put(frame(i))

    queue.finish()

    assert drain(queue) == [0, 1, 2]


# --- exhausted ------------------------------------------------------------------------------------


async def test_queue_is_exhausted_only_when_finished_and_empty() -> None:
    queue = FrameQueue("s", maxsize=2, policy="block")
    assert not queue.exhausted  # empty but not finished: more may come

    await queue.put(frame(0))
    queue.finish()
    assert not queue.exhausted  # finished but a frame is left

    queue.get_nowait()
    assert queue.exhausted


def test_get_nowait_when_empty_returns_none() -> None:
    queue = FrameQueue("s", maxsize=2, policy="block")

    assert queue.get_nowait() is None
    assert len(queue) == 0


async def test_queue_with_a_staleness_budget_drops_and_counts_old_frames() -> None:
    import time

    from streamer.frames import Frame

    queue = FrameQueue("cam", 8, "block", staleness_s=0.5)
    old = Frame("cam", 0, None, time.time() - 2.0, image=np.zeros((2, 2, 3), np.uint8))
    fresh = Frame("cam", 1, None, time.time(), image=np.zeros((2, 2, 3), np.uint8))
    await queue.put(old)
    await queue.put(fresh)

    assert queue.get_nowait() is fresh
    assert queue.stale == 1 and queue.get_nowait() is None


def test_next_capture_follows_the_interval_between_the_frames_captured():
    queue = FrameQueue("s", 2, "latest")
    assert queue.next_capture() is None
    for captured in (10.0, 10.1, 10.2):
        queue.try_put(Frame("s", 0, None, captured, image=np.zeros((2, 2, 3), np.uint8)))

    assert queue.next_capture() == pytest.approx(10.3)
    assert queue.peek() is not None and queue.peek() is queue.get_nowait()  # peek leaves what get takes
    queue.finish()
    assert queue.next_capture() is None
