"""Form batches across sources, and letterbox them into reusable input buffers.

`Batcher` takes frames from every source's queue in turn (round robin, so no source starves) and
hands out a batch when it holds `max_batch_size` frames or its first frame has waited `max_wait_ms`
since capture, whichever comes first, as Triton's dynamic batcher does.

`InputBuffers` turns a batch into the model's input tensor: each frame is resized by FFmpeg's scaler
straight to its letterboxed size, then normalised into a preallocated NCHW array, so steady state
allocates no new input arrays.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Sequence

import anyio
import numpy as np

from .frames import Frame
from .scaling import to_rgb
from .sources.queue import FrameQueue


class Batcher:
    """Round-robin batches over a changing set of frame queues."""

    def __init__(self, max_batch_size: int, max_wait_ms: float, keep_alive: bool = False) -> None:
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000
        self.keep_alive = keep_alive
        self._queues: list[FrameQueue] = []
        self._next = 0
        self._ready = anyio.Event()

    def add_queue(self, queue: FrameQueue) -> None:
        self._queues.append(queue)
        self.notify()

    def close(self) -> None:
        """End once every queue is drained, even when kept alive for sources added later."""
        self.keep_alive = False
        self.notify()

    def notify(self) -> None:
        """Called by a queue when a frame arrives or it finishes."""
        self._ready.set()

    async def next_batch(self) -> list[Frame] | None:
        """The next batch, or None once every queue is finished and empty."""
        batch = await self._first_frames()
        if batch is None:
            return None
        waited = time.time() - batch[0].wall_time  # the deadline counts from the frame's capture
        with anyio.move_on_after(self.max_wait - waited):
            while len(batch) < self.max_batch_size and not self._all_exhausted():
                await self._wait_ready()
                batch += self._take(self.max_batch_size - len(batch))
        return batch

    async def _first_frames(self) -> list[Frame] | None:
        while True:
            batch = self._take(self.max_batch_size)
            if batch:
                return batch
            if self._all_exhausted():
                return None
            await self._wait_ready()

    async def _wait_ready(self) -> None:
        await self._ready.wait()
        self._ready = anyio.Event()

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


@dataclass(frozen=True)
class InputSpec:
    """How a model wants its input: NCHW, RGB, `pixel * scale + offset`, letterboxed with `pad_value`."""

    width: int
    height: int
    dtype: np.dtype
    scale: float = 1 / 255
    pad_value: float = 114 / 255
    offset: float = 0.0

    @property
    def width_height(self) -> tuple[int, int]:
        return self.width, self.height


@dataclass(frozen=True)
class Placement:
    """Where a frame landed in the input: input = source * gain + (left, top)."""

    gain: float
    left: int
    top: int

    def to_source(self, xy: np.ndarray) -> np.ndarray:
        """Map input-space x/y pairs (last axis alternating x, y) back to source pixels."""
        out = xy.astype(np.float32, copy=True)
        out[..., 0::2] -= self.left
        out[..., 1::2] -= self.top
        return out / self.gain


def place(width: int, height: int, spec: InputSpec) -> tuple[Placement, int, int]:
    """Letterbox geometry: the largest size that fits, centred."""
    gain = min(spec.width / width, spec.height / height)
    new_w, new_h = max(1, round(width * gain)), max(1, round(height * gain))
    left, top = (spec.width - new_w) // 2, (spec.height - new_h) // 2
    return Placement(gain, left, top), new_w, new_h


class InputBuffers:
    """A thread-safe pool of NCHW input arrays, reused batch after batch."""

    def __init__(self, spec: InputSpec, capacity: int) -> None:
        self.spec = spec
        self.capacity = capacity
        self._free: list[_Buffer] = []
        self._lock = threading.Lock()

    def acquire(self) -> _Buffer:
        with self._lock:
            if self._free:
                return self._free.pop()
        return _Buffer(self.spec, self.capacity)

    def release(self, buffer: _Buffer) -> None:
        with self._lock:
            self._free.append(buffer)


class _Buffer:
    def __init__(self, spec: InputSpec, capacity: int) -> None:
        self.spec = spec
        self.array = np.full((capacity, 3, spec.height, spec.width), spec.pad_value, dtype=spec.dtype)
        self._slot_geometry: list[tuple[int, int, int, int] | None] = [None] * capacity

    def fill(self, frames: Sequence[Frame]) -> tuple[np.ndarray, list[Placement]]:
        """Letterbox `frames` into the first slots; returns the batch view and each placement."""
        placements = [self._fill_slot(i, frame) for i, frame in enumerate(frames)]
        return self.array[: len(frames)], placements

    def _fill_slot(self, slot: int, frame: Frame) -> Placement:
        placement, new_w, new_h = place(frame.width, frame.height, self.spec)
        geometry = (new_w, new_h, placement.left, placement.top)
        target = self.array[slot]
        if self._slot_geometry[slot] != geometry:
            target[...] = self.spec.pad_value
            self._slot_geometry[slot] = geometry
        pixels = resized_rgb(frame, new_w, new_h)
        region = target[:, placement.top : placement.top + new_h, placement.left : placement.left + new_w]
        np.multiply(pixels.transpose(2, 0, 1), self.spec.scale, out=region, casting="unsafe")
        if self.spec.offset:
            region += self.spec.offset
        return placement


def resized_rgb(frame: Frame, width: int, height: int) -> np.ndarray:
    """The frame as RGB uint8 at (height, width), scaled by FFmpeg (bilinear)."""
    decoded = frame.decoded
    if decoded is None:
        if frame.width == width and frame.height == height:
            return frame.image
        import av

        decoded = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame.image), format="rgb24")
    return to_rgb(decoded, width, height)
