"""Batcher (size/deadline, round robin) and InputBuffers (letterboxing into reused arrays)."""

from __future__ import annotations

import time

import threading
from pathlib import Path

import anyio
import numpy as np
import pytest

from streamer.batcher import Batcher, InputBuffers, InputSpec, Placement, place
from streamer.frames import Frame
from streamer.sources import AvSource
from streamer.sources.base import only_frames
from streamer.sources.queue import FrameQueue

F32 = np.dtype(np.float32)
PAD = np.float32(114 / 255)
ONE_LEVEL = 1 / 255


def frame(source_id: str, index: int, width: int = 4, height: int = 4, captured: float | None = None) -> Frame:
    wall_time = time.time() if captured is None else captured
    return Frame(source_id, index, None, wall_time, image=np.zeros((height, width, 3), np.uint8))


def solid(width: int, height: int, rgb: tuple[int, int, int], index: int = 0) -> Frame:
    image = np.empty((height, width, 3), np.uint8)
    image[...] = rgb
    return Frame("s", index, None, 0.0, image=image)


async def filled_queue(batcher: Batcher, source_id: str, count: int, maxsize: int = 16) -> FrameQueue:
    queue = FrameQueue(source_id, maxsize, "block", on_ready=batcher.notify)
    batcher.add_queue(queue)
    for i in range(count):
        await queue.put(frame(source_id, i))
    return queue


def labels(batch: list[Frame] | None) -> list[str]:
    assert batch is not None
    return [f"{f.source_id}{f.index}" for f in batch]


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
    batches: list[list[Frame] | None] = []

    async def take() -> None:
        batches.append(await batcher.next_batch())

    async with anyio.create_task_group() as group:
        group.start_soon(take)
        await anyio.wait_all_tasks_blocked()
        assert batches == []

        await queue_b.put(frame("b", 0))
        await queue_a.put(frame("a", 0))

    assert sorted(labels(batches[0])) == ["a0", "b0"]


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
    batches: list[list[Frame] | None] = []

    async def take() -> None:
        batches.append(await batcher.next_batch())

    with anyio.fail_after(1):
        async with anyio.create_task_group() as group:
            group.start_soon(take)
            await anyio.wait_all_tasks_blocked()
            queue.finish()

    assert batches == [None]


async def test_next_batch_keeps_waiting_while_one_queue_is_still_open() -> None:
    batcher = Batcher(max_batch_size=2, max_wait_ms=10_000)
    (await filled_queue(batcher, "a", 0)).finish()
    open_queue = await filled_queue(batcher, "b", 0)
    batches: list[list[Frame] | None] = []

    async def take() -> None:
        batches.append(await batcher.next_batch())

    async with anyio.create_task_group() as group:
        group.start_soon(take)
        await anyio.wait_all_tasks_blocked()
        assert batches == []

        await open_queue.put(frame("b", 0))
        open_queue.finish()

    assert labels(batches[0]) == ["b0"]


# --- place / Placement ------------------------------------------------------------------------------


def test_place_letterboxes_landscape_into_a_square() -> None:
    placement, new_w, new_h = place(1280, 720, InputSpec(320, 320, F32))

    assert (new_w, new_h) == (320, 180)
    assert placement == Placement(gain=0.25, left=0, top=70)  # (320 - 180) // 2


def test_place_letterboxes_landscape_into_a_shorter_input() -> None:
    placement, new_w, new_h = place(1280, 720, InputSpec(320, 256, F32))

    assert (new_w, new_h) == (320, 180)
    assert placement == Placement(gain=0.25, left=0, top=38)


def test_place_pillarboxes_portrait() -> None:
    placement, new_w, new_h = place(480, 640, InputSpec(320, 320, F32))

    assert (new_w, new_h) == (240, 320)
    assert placement == Placement(gain=0.5, left=40, top=0)


def test_place_scales_small_frames_up() -> None:
    placement, new_w, new_h = place(160, 96, InputSpec(320, 320, F32))

    assert (placement.gain, new_w, new_h, placement.top) == (2.0, 320, 192, 64)


def test_placement_to_source_inverts_the_letterbox() -> None:
    placement, _, _ = place(1280, 720, InputSpec(320, 320, F32))
    source = np.array([[0, 0, 1280, 720], [100, 200, 300, 400]], np.float32)
    in_input = source * placement.gain
    in_input[:, 0::2] += placement.left
    in_input[:, 1::2] += placement.top

    np.testing.assert_allclose(placement.to_source(in_input), source, atol=1e-3)


def test_placement_to_source_leaves_its_input_unchanged() -> None:
    placement = Placement(gain=0.5, left=40, top=10)
    points = np.array([[40.0, 10.0, 60.0, 30.0]])

    mapped = placement.to_source(points)

    np.testing.assert_array_equal(mapped, [[0.0, 0.0, 40.0, 40.0]])
    np.testing.assert_array_equal(points, [[40.0, 10.0, 60.0, 30.0]])


# --- InputBuffers -----------------------------------------------------------------------------------


def test_fill_scales_pixels_inside_the_content_region() -> None:
    buffer = InputBuffers(InputSpec(320, 320, F32), capacity=2).acquire()

    batch, [placement] = buffer.fill([solid(1280, 720, (10, 128, 250))])

    assert batch.shape == (1, 3, 320, 320) and batch.dtype == F32
    content = batch[0, :, placement.top : placement.top + 180, :]
    expected = np.array([10, 128, 250], np.float32)[:, None, None] / 255
    np.testing.assert_allclose(content, np.broadcast_to(expected, content.shape), atol=1.5 * ONE_LEVEL)


def test_fill_pads_outside_the_content_region() -> None:
    buffer = InputBuffers(InputSpec(320, 320, F32), capacity=1).acquire()

    batch, [placement] = buffer.fill([solid(1280, 720, (10, 128, 250))])

    assert placement.top == 70
    assert (batch[0, :, :70, :] == PAD).all()
    assert (batch[0, :, 250:, :] == PAD).all()


def test_fill_uses_the_specs_scale_and_pad_value() -> None:
    spec = InputSpec(64, 64, F32, scale=1.0, pad_value=0.0)
    buffer = InputBuffers(spec, capacity=1).acquire()

    batch, [placement] = buffer.fill([solid(128, 64, (200, 100, 50))])  # -> 64 x 32, top 16

    assert placement == Placement(gain=0.5, left=0, top=16)
    np.testing.assert_allclose(batch[0, :, 16:48, :].max(axis=(1, 2)), [200, 100, 50], atol=1.5)
    assert (batch[0, :, :16, :] == 0).all() and (batch[0, :, 48:, :] == 0).all()


def test_fill_when_frame_already_has_the_input_size_copies_it_exactly() -> None:
    image = np.random.default_rng(0).integers(0, 256, (32, 48, 3), np.uint8)
    buffer = InputBuffers(InputSpec(48, 32, F32), capacity=1).acquire()

    batch, [placement] = buffer.fill([Frame("s", 0, None, 0.0, image=image)])

    assert placement == Placement(gain=1.0, left=0, top=0)
    np.testing.assert_allclose(batch[0], image.transpose(2, 0, 1) / 255, atol=1e-6)


def test_fill_gives_each_frame_size_its_own_geometry() -> None:
    buffer = InputBuffers(InputSpec(320, 320, F32), capacity=3).acquire()

    batch, placements = buffer.fill([solid(1280, 720, (255, 0, 0)), solid(480, 640, (0, 255, 0))])

    assert placements == [Placement(0.25, 0, 70), Placement(0.5, 40, 0)]
    assert (batch[0, 0, 70:250, :] > 0.99).all() and (batch[0, :, :70, :] == PAD).all()
    assert (batch[1, 1, :, 40:280] > 0.99).all() and (batch[1, :, :, :40] == PAD).all()
    assert (batch[1, :, :, 280:] == PAD).all()


def test_fill_when_a_slot_changes_geometry_repads_the_old_content() -> None:
    buffer = InputBuffers(InputSpec(320, 320, F32), capacity=1).acquire()
    buffer.fill([solid(1280, 720, (255, 255, 255))])  # content rows 70..250, full width

    batch, _ = buffer.fill([solid(480, 640, (255, 255, 255))])  # content columns 40..280, full height

    assert (batch[0, :, :, :40] == PAD).all() and (batch[0, :, :, 280:] == PAD).all()


def test_fill_returns_only_the_slots_it_filled() -> None:
    buffer = InputBuffers(InputSpec(32, 32, F32), capacity=4).acquire()

    batch, placements = buffer.fill([solid(32, 32, (1, 2, 3)), solid(32, 32, (4, 5, 6))])

    assert batch.shape == (2, 3, 32, 32) and len(placements) == 2


def test_input_buffers_reuse_the_same_array_in_steady_state() -> None:
    buffers = InputBuffers(InputSpec(64, 64, F32), capacity=2)
    first = buffers.acquire()
    array = first.array
    buffers.release(first)

    for i in range(5):
        buffer = buffers.acquire()
        batch, _ = buffer.fill([solid(128, 96, (i, i, i)), solid(128, 96, (i, i, i))])
        assert buffer is first and buffer.array is array
        assert np.shares_memory(batch, array)
        buffers.release(buffer)


def test_input_buffers_hand_out_distinct_arrays_while_both_are_held() -> None:
    buffers = InputBuffers(InputSpec(16, 16, F32), capacity=1)

    one, two = buffers.acquire(), buffers.acquire()

    assert one.array is not two.array
    assert not np.shares_memory(one.array, two.array)


def test_new_buffer_starts_padded() -> None:
    buffer = InputBuffers(InputSpec(16, 16, F32), capacity=2).acquire()

    assert buffer.array.shape == (2, 3, 16, 16) and (buffer.array == PAD).all()


# --- InputBuffers with decoded PyAV frames ----------------------------------------------------------


@pytest.fixture(scope="module")
def decoded_frames(clip: Path) -> list[Frame]:
    return list(only_frames(AvSource("clip", str(clip), max_frames=3).frames(threading.Event())))


def test_fill_accepts_decoded_pyav_frames(decoded_frames: list[Frame]) -> None:
    buffer = InputBuffers(InputSpec(80, 80, F32), capacity=3).acquire()

    batch, placements = buffer.fill(decoded_frames)

    assert decoded_frames[0].decoded is not None
    assert placements == [Placement(0.5, 0, 16)] * 3  # 160 x 96 -> 80 x 48
    assert (batch[:, :, :16, :] == PAD).all() and (batch[:, :, 64:, :] == PAD).all()
    assert (batch[:, :, 16:64, :] != PAD).any()


def test_fill_from_decoded_frames_agrees_with_fill_from_arrays(decoded_frames: list[Frame]) -> None:
    spec = InputSpec(80, 80, F32)
    as_arrays = [Frame("clip", f.index, f.pts, f.wall_time, image=f.image) for f in decoded_frames]

    from_decoded, placements_decoded = InputBuffers(spec, 3).acquire().fill(decoded_frames)
    from_arrays, placements_arrays = InputBuffers(spec, 3).acquire().fill(as_arrays)

    assert placements_decoded == placements_arrays
    difference = np.abs(from_decoded - from_arrays)
    # The two paths scale in different colour spaces (YUV then RGB, or RGB), so sharp edges differ a
    # little; the picture as a whole must match.
    assert difference.mean() < 2 * ONE_LEVEL
    assert np.percentile(difference, 99) < 8 * ONE_LEVEL
