"""Frames with detail in every channel, decoded or raw, for comparing the device and CPU paths."""

from __future__ import annotations

import av
import numpy as np

from streamer.frames import Frame


def textured(width: int, height: int, seed: int = 0) -> np.ndarray:
    """Gradients, fine ripples, a saturated block and noise: what makes scalers disagree."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width]
    image = np.stack(
        [xs * 255 / width, ys * 255 / height, 128 + 100 * np.sin(xs / 7.0) * np.cos(ys / 5.0)], axis=-1
    )
    image[height // 4 : height // 2, width // 3 : width // 2] = (250, 20, 30)
    image += rng.normal(0, 12, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def decoded_frame(
    width: int, height: int, index: int = 0, pix_fmt: str = "yuv420p", colorspace: int | None = None
) -> Frame:
    """A Frame holding a PyAV frame in `pix_fmt`, as a decoder hands them over."""
    decoded = av.VideoFrame.from_ndarray(textured(width, height, index), format="rgb24").reformat(format=pix_fmt)
    if colorspace is not None:
        decoded.colorspace = colorspace
    return Frame("cam", index, None, 0.0, decoded=decoded)


def image_frame(width: int, height: int, index: int = 0) -> Frame:
    return Frame("cam", index, None, 0.0, image=textured(width, height, index))
