"""Separable resampling with a triangle filter, as FFmpeg's bilinear scaler does.

Each output sample is a weighted sum of the input samples within one output pixel's width
(`support` input pixels) of its centre, weighted by a triangle, so downscaling averages instead of
skipping pixels; upscaling is plain bilinear interpolation. Centres follow FFmpeg: output pixel i
sits at input position (i + 0.5) * n_in / n_out - 0.5, and samples past the edge repeat it; a
`shift` moves every centre by that many input samples (chroma that is not centre-sited, siting.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Taps:
    """For each output sample, the input samples it reads and their weights (rows sum to 1)."""

    index: np.ndarray  # (n_out, taps) int64
    weight: np.ndarray  # (n_out, taps) float32

    @property
    def is_identity(self) -> bool:
        return self.index.shape[1] == 1 and bool(np.all(self.index[:, 0] == np.arange(len(self.index))))


def triangle_taps(n_in: int, n_out: int, shift: float = 0.0) -> Taps:
    """The filter taking `n_in` samples to `n_out`, its centres moved by `shift` input samples."""
    if n_in < 1 or n_out < 1:
        raise ValueError(f"cannot resample {n_in} samples to {n_out}")
    scale = n_in / n_out
    support = max(scale, 1.0)
    centres = (np.arange(n_out) + 0.5) * scale - 0.5 + shift
    first = np.floor(centres - support).astype(np.int64) + 1
    index = first[:, None] + np.arange(2 * math.ceil(support) + 2)[None, :]
    weight = np.maximum(0.0, 1.0 - np.abs(index - centres[:, None]) / support)
    used = weight.any(axis=0)
    index, weight = index[:, used], weight[:, used]
    weight /= weight.sum(axis=1, keepdims=True)
    return Taps(np.clip(index, 0, n_in - 1), weight.astype(np.float32))


class DeviceTaps:
    """Taps moved to a device once, split into one (index, weight) pair per tap."""

    def __init__(self, taps: Taps, asarray: Any) -> None:
        self.is_identity = taps.is_identity
        self.columns = [
            (asarray(np.ascontiguousarray(taps.index[:, k])), asarray(np.ascontiguousarray(taps.weight[:, k])))
            for k in range(taps.index.shape[1])
        ]


def resample_axis(planes: Any, taps: DeviceTaps, axis: int) -> Any:
    """Resample float32 `planes` along `axis` (1: rows, 2: columns of a (batch, H, W, ...) array)."""
    if taps.is_identity:
        return planes
    shape = [1] * planes.ndim
    shape[axis] = -1
    total = None
    for index, weight in taps.columns:
        term = planes.take(index, axis=axis) * weight.reshape(shape)
        total = term if total is None else total.__iadd__(term)
    return total
