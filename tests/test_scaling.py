"""Model inputs from decoded frames (streamer/scaling.py): a shrinking YUV frame is resized in YUV
first, within one level of FFmpeg's one-step resize with the model-input flags; the rest take that
one step."""

from __future__ import annotations

import functools
import operator

import av
import numpy as np
import pytest
from av.video.reformatter import Interpolation

from streamer.scaling import MODEL_INPUT_FLAGS, to_rgb
from tests.device.helpers import decoded_frame, textured

ONE_STEP = functools.reduce(operator.or_, (Interpolation[name] for name in MODEL_INPUT_FLAGS))


def one_step(decoded: av.VideoFrame, width: int, height: int) -> np.ndarray:
    return decoded.reformat(width, height, format="rgb24", interpolation=ONE_STEP, threads=1).to_ndarray().astype(int)


@pytest.mark.parametrize(
    ("pix_fmt", "colorspace"),
    [("yuv420p", None), ("yuv420p", 1), ("yuv420p", 5), ("yuv420p", 9), ("yuvj420p", None), ("nv12", None), ("yuv422p", None)],
)
@pytest.mark.parametrize(("width", "height", "to"), [(1920, 1080, (320, 180)), (1000, 700, (320, 224)), (322, 180, (320, 179))])
def test_to_rgb_when_a_yuv_frame_shrinks_is_within_one_level_of_the_one_step_resize(pix_fmt, colorspace, width, height, to):
    decoded = decoded_frame(width, height, pix_fmt=pix_fmt, colorspace=colorspace).decoded

    got = to_rgb(decoded, *to)

    assert got.shape == (to[1], to[0], 3)
    assert np.abs(got.astype(int) - one_step(decoded, *to)).max() <= 1


@pytest.mark.parametrize("to", [(320, 192), (160, 96)])
def test_to_rgb_when_the_frame_grows_or_keeps_its_size_is_the_one_step_resize(to):
    decoded = decoded_frame(160, 96).decoded

    np.testing.assert_array_equal(to_rgb(decoded, *to), one_step(decoded, *to))


def test_to_rgb_when_the_frame_is_rgb_is_the_one_step_resize():
    decoded = av.VideoFrame.from_ndarray(textured(640, 360), format="rgb24")

    np.testing.assert_array_equal(to_rgb(decoded, 320, 180), one_step(decoded, 320, 180))
