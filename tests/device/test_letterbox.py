"""The device letterbox against the CPU path (FFmpeg's scaler): within one level everywhere.

Here the device is NumPy; tests/device/test_gpu.py runs the same comparison on CuPy.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from streamer.engine.preprocess import InputBuffers, InputSpec
from streamer.device import DeviceInputBuffers, array_device
from streamer.errors import ParameterError

from .helpers import decoded_frame, image_frame

F32 = np.dtype(np.float32)
ONE_LEVEL = 1 / 255 + 1e-5  # one 8-bit level, plus float32 rounding of the scale


def both_paths(frames, spec: InputSpec, device=None):
    cpu = InputBuffers(spec, len(frames)).acquire()
    gpu = DeviceInputBuffers(spec, len(frames), device or array_device("cpu")).acquire()
    expected, expected_placements = cpu.fill(frames)
    got, placements = gpu.fill(frames)
    assert placements == expected_placements
    return np.asarray(expected, np.float32), np.asarray(got, np.float32)


@pytest.mark.parametrize(
    ("width", "height"),
    [(1920, 1080), (1280, 720), (640, 360), (160, 96), (320, 320), (1000, 700), (322, 180)],
)
def test_device_letterbox_when_decoded_yuv420p_matches_ffmpeg_within_one_level(width: int, height: int) -> None:
    expected, got = both_paths([decoded_frame(width, height)], InputSpec(320, 320, F32))

    assert np.abs(expected - got).max() <= ONE_LEVEL


@pytest.mark.parametrize(("width", "height"), [(1280, 720), (1000, 700), (160, 96)])
def test_device_letterbox_when_an_rgb_image_matches_ffmpeg_within_one_level(width: int, height: int) -> None:
    expected, got = both_paths([image_frame(width, height)], InputSpec(320, 320, F32))

    assert np.abs(expected - got).max() <= ONE_LEVEL


@pytest.mark.parametrize(
    ("pix_fmt", "colorspace"), [("yuv420p", 1), ("yuvj420p", None), ("yuv420p", 9), ("yuv420p", 5), ("nv12", None)]
)
def test_device_letterbox_when_the_frame_names_its_matrix_or_range_converts_as_ffmpeg_does(
    pix_fmt: str, colorspace: int | None
) -> None:
    frame = decoded_frame(1280, 720, pix_fmt=pix_fmt, colorspace=colorspace)

    expected, got = both_paths([frame], InputSpec(320, 320, F32))

    assert np.abs(expected - got).max() <= ONE_LEVEL


def test_device_letterbox_when_sources_of_several_sizes_share_a_batch_fills_each_slot() -> None:
    frames = [
        decoded_frame(1280, 720, 0),
        image_frame(640, 480, 1),
        decoded_frame(1280, 720, 2),  # same layout as slot 0 but not next to it
        decoded_frame(480, 640, 3),  # portrait: padded left and right
    ]

    expected, got = both_paths(frames, InputSpec(320, 256, F32))

    for slot in range(len(frames)):
        assert np.abs(expected[slot] - got[slot]).max() <= ONE_LEVEL, slot


def test_device_letterbox_when_fp16_with_an_offset_normalises_as_the_cpu_path() -> None:
    spec = dataclasses.replace(InputSpec(256, 256, np.dtype(np.float16)), scale=1 / 127.5, offset=-1.0)

    expected, got = both_paths([decoded_frame(800, 600)], spec)

    assert DeviceInputBuffers(spec, 1, array_device("cpu")).acquire().array.dtype == np.float16
    assert np.abs(expected - got).max() <= 1 / 127.5 + 1e-3  # one level, plus float16 rounding


def test_device_buffer_when_reused_for_other_sizes_repads_the_slot() -> None:
    spec = InputSpec(64, 64, F32)
    pool = DeviceInputBuffers(spec, 1, array_device("cpu"))
    buffer = pool.acquire()
    buffer.fill([decoded_frame(128, 32)])  # a wide strip: rows above and below are padding

    batch, _ = buffer.fill([decoded_frame(32, 128)])  # tall: now columns are padding, rows are picture

    assert np.allclose(batch[0, :, :, :8], 114 / 255)  # left margin
    assert not np.allclose(batch[0, :, :8, 28:36], 114 / 255)  # the old top margin now holds picture
    expected = InputBuffers(spec, 1).acquire().fill([decoded_frame(32, 128)])[0]
    assert np.abs(expected - batch).max() <= ONE_LEVEL


def test_device_buffer_when_filled_again_reuses_its_arrays() -> None:
    pool = DeviceInputBuffers(InputSpec(64, 64, F32), 2, array_device("cpu"))
    buffer = pool.acquire()
    first, _ = buffer.fill([decoded_frame(96, 64, 0), decoded_frame(96, 64, 1)])
    staging = dict(buffer._staging)

    second, _ = buffer.fill([decoded_frame(96, 64, 2)])

    assert np.shares_memory(first, second)
    assert {layout: arrays[0].ctypes.data for layout, arrays in buffer._staging.items()} == {
        layout: arrays[0].ctypes.data for layout, arrays in staging.items()
    }
    pool.release(buffer)
    assert pool.acquire() is buffer


def test_array_device_when_the_device_is_unknown_names_it() -> None:
    with pytest.raises(ParameterError, match="'gpu0'"):
        array_device("gpu0", "model 'm'")


def test_device_buffer_when_asked_for_timings_adds_each_step():
    buffer = DeviceInputBuffers(InputSpec(64, 64, F32), 2, array_device("cpu")).acquire()
    timings = {"upload": 1.0}

    buffer.fill([decoded_frame(96, 64, 0), image_frame(64, 96, 1)], timings)

    assert set(timings) == {"stage", "upload", "preprocess"}
    assert timings["upload"] > 1.0 and timings["stage"] > 0 and timings["preprocess"] > 0
