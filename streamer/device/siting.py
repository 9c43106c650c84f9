"""Where a 4:2:0 frame's chroma samples sit, as FFmpeg's scaler (the CPU path) takes them.

FFmpeg's scaler places chroma where the frame's `chroma_location` says (PyAV 18's `reformat` is
`sws_scale_frame`): FFmpeg's H.264 and HEVC decoders tag frames "left" (each chroma sample
co-sited with an even luma column, between two rows) unless the stream says otherwise, JPEG and
frames made in memory are centre-sited, some HEVC streams say "top-left". Resampling as if every
frame were centre-sited puts decoded H.264's chroma a quarter chroma sample off: up to 45 levels
on fine detail. PyAV 18.1 does not expose `chroma_location`, so it is measured instead: FFmpeg
upsamples the frame's chroma to full size (yuv444p, the CPU path's flags) once, and the siting
whose interpolation comes closest to FFmpeg's is the frame's. The device letterbox asks once per
source connection (streamer/device/letterbox.py).
"""

from __future__ import annotations

import functools
import operator
from typing import Any

import numpy as np

from .resample import Taps, triangle_taps

# (x, y) offsets of the chroma samples from centre-sited, in chroma samples: centre, left, top-left, top.
SITINGS: tuple[tuple[float, float], ...] = ((0.0, 0.0), (0.25, 0.0), (0.25, 0.25), (0.0, 0.25))
STRIP = 32  # output rows and columns compared around the middle of the frame (enough, and cheap)


def chroma_shift(decoded: Any) -> tuple[float, float]:
    """The (x, y) shift, in chroma samples, that makes a centre-sited resampler place this 4:2:0
    frame's (yuv420p, yuvj420p or nv12) chroma where FFmpeg's scaler does."""
    from av.video.reformatter import Interpolation

    from ..scaling import MODEL_INPUT_FLAGS

    width, height = decoded.width, decoded.height
    # The same matrix and range on both sides: only the chroma is resampled, nothing converted.
    full = decoded.reformat(
        format="yuvj444p" if decoded.format.name == "yuvj420p" else "yuv444p",
        interpolation=functools.reduce(operator.or_, (Interpolation[name] for name in MODEL_INPUT_FLAGS)),
        dst_colorspace=decoded.colorspace,
        dst_color_range=decoded.color_range,
        threads=1,
    )
    rows, columns = _window(height), _window(width)
    expected = _plane(full.planes[1], width, height)[rows][:, columns]
    chroma = _u_plane(decoded)
    errors = [float(np.abs(_upsampled(chroma, width, height, shift, rows, columns) - expected).mean()) for shift in SITINGS]
    return SITINGS[int(np.argmin(errors))]


def _window(size: int) -> slice:
    middle = size // 2
    return slice(max(0, middle - STRIP), min(size, middle + STRIP))


def _plane(plane: Any, width: int, height: int) -> np.ndarray:
    return np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[:height, :width].astype(np.float32)


def _u_plane(decoded: Any) -> np.ndarray:
    """The frame's U samples, (height / 2, width / 2), from planar or semi-planar (nv12) layouts."""
    plane = decoded.planes[1]
    if decoded.format.name == "nv12":
        pairs = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[: plane.height, : 2 * plane.width]
        return pairs[:, 0::2].astype(np.float32)
    return _plane(plane, plane.width, plane.height)


def _upsampled(chroma: np.ndarray, width: int, height: int, shift: tuple[float, float], rows: slice, columns: slice) -> np.ndarray:
    """The chroma plane resampled to (height, width) with the siting `shift`, at `rows` x `columns` only."""
    vertical = _part(triangle_taps(chroma.shape[0], height, shift[1]), rows)
    horizontal = _part(triangle_taps(chroma.shape[1], width, shift[0]), columns)
    picked = (chroma[vertical.index] * vertical.weight[:, :, None]).sum(axis=1)
    return (picked[:, horizontal.index] * horizontal.weight[None]).sum(axis=2)


def _part(taps: Taps, where: slice) -> Taps:
    return Taps(taps.index[where], taps.weight[where])
