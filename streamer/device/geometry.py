"""Letterbox geometry: how a model wants its input, and where a frame lands in it.

Plain values and arithmetic, shared by the host path (`streamer.engine.preprocess.InputBuffers`) and
the device path (`streamer.device.DeviceInputBuffers`), so both put every frame in the same place.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
