"""Preprocessing: a batch of frames in, the model's input tensor out, letterboxed into reused arrays.

`InputBuffers` is the host path: each frame is resized by FFmpeg's scaler straight to its
letterboxed size, then normalised into a preallocated NCHW array, so steady state allocates no new
input arrays. The device path (`streamer.device.DeviceInputBuffers`) does the same on a GPU; both
share the geometry of `streamer.device.geometry`, re-exported here for the model families.
"""

from __future__ import annotations

import threading
from typing import Sequence

import numpy as np

from ..device.geometry import InputSpec, Placement, place
from ..frames import Frame
from ..scaling import to_rgb

__all__ = ["InputBuffers", "InputSpec", "Placement", "place", "resized_rgb"]


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
