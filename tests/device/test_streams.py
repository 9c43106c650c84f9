"""The stream rule (streamer/device/streams.py) in the letterbox, on cuda:1, with a fake CuPy.

No GPU here: tests/device/fakecuda.py stands in for CuPy's Device, Stream and Event over NumPy, so
these check the plumbing only (device contexts, who records, who waits, in what order); the
numbers are NumPy's and equal the host path's. tests/device/test_gpu.py and bench/gpu.py check the
real thing on a GPU.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from streamer.device import ArrayDevice, DeviceInputBuffers, array_device
from streamer.device.streams import hand_off, host_wait, record, wait
from streamer.engine.preprocess import InputSpec

from .fakecuda import Trace, fake_cupy
from .helpers import decoded_frame, image_frame

SPEC = InputSpec(320, 320, np.dtype(np.float32))


@pytest.fixture
def gpu_1(monkeypatch: pytest.MonkeyPatch) -> tuple[ArrayDevice, Trace]:
    trace = Trace()
    cupy, cupyx = fake_cupy(trace)
    monkeypatch.setitem(sys.modules, "cupyx", cupyx)  # ArrayDevice.empty_host's pinned memory
    return ArrayDevice(cupy, cupy.cuda.Device(1)), trace


def frames() -> list:
    return [decoded_frame(640, 360, 0), image_frame(400, 300, 1), decoded_frame(640, 360, 2)]


def test_device_letterbox_when_on_cuda_1_makes_every_array_on_gpu_1_and_its_own_stream(gpu_1):
    device, trace = gpu_1

    batch, _ = DeviceInputBuffers(SPEC, 4, device).acquire().fill(frames())

    assert {device_id for device_id, _ in trace.arrays} == {1}  # the pad fill and the taps too
    streams = {stream for _, stream in trace.arrays}
    assert len(streams) == 1 and next(iter(streams)).ptr != 0  # the buffer's stream, not the legacy one
    expected, _ = DeviceInputBuffers(SPEC, 4, array_device("cpu")).acquire().fill(frames())
    np.testing.assert_array_equal(np.asarray(batch), expected)


def test_device_letterbox_when_filled_hands_the_batch_to_the_callers_stream_without_a_host_wait(gpu_1):
    device, trace = gpu_1
    buffer = DeviceInputBuffers(SPEC, 4, device).acquire()
    (_, buffer_stream), = set(trace.arrays)
    trace.steps.clear()

    buffer.fill(frames())

    (_, recorded_on, event), (_, waiting, waited_for) = trace.steps[-2:]
    assert recorded_on is buffer_stream and waited_for is event
    assert waiting is device.current_stream() and waiting.ptr == 0 and waiting.device_id == 1
    assert trace.steps[-1][0] == "wait"  # the host went on
    uploads = [step for step in trace.steps if step[0] == "host_wait"]
    assert uploads and all(step[1] in [s[2] for s in trace.steps if s[0] == "record"] for step in uploads)


def test_device_input_buffers_when_released_wait_on_the_host_for_the_callers_stream_first(gpu_1):
    device, trace = gpu_1
    pool = DeviceInputBuffers(SPEC, 4, device)
    buffer = pool.acquire()
    buffer.fill(frames())
    trace.steps.clear()

    pool.release(buffer)

    assert [step[0] for step in trace.steps] == ["record", "host_wait"]
    assert trace.steps[0][1] is device.current_stream() and trace.steps[1][1] is trace.steps[0][2]
    assert pool.acquire() is buffer  # back on the free list only after that


def test_stream_helpers_when_on_the_host_do_nothing():
    assert record(None) is None
    wait(None, None), host_wait(None), hand_off(None, None)  # no stream, no event: nothing to order
    assert array_device("cpu").current_stream() is None
