"""Which input buffers a model letterboxes into, and what happens when the GPU path cannot be had."""

from __future__ import annotations

import importlib.util
import logging

import numpy as np
import pytest

from streamer.engine.preprocess import InputBuffers
from streamer.engine import AutoModel
from streamer.engine.models.yolo import UltralyticsYolo

from .helpers import decoded_frame


class _ReportsCuda:
    """The real ONNX Runtime backend, claiming its inputs belong on a GPU (none can run here)."""

    def __init__(self, backend) -> None:
        self._backend = backend
        self.input_device = "cuda:0"

    def __getattr__(self, name):
        return getattr(self._backend, name)


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="cupy is installed here")
def test_detection_model_when_the_backend_wants_a_gpu_without_cupy_letterboxes_on_the_cpu(yolo_path, caplog):
    cpu = AutoModel.from_pretrained(str(yolo_path))
    frames = [decoded_frame(640, 360, 0), decoded_frame(640, 360, 1)]

    with caplog.at_level(logging.WARNING):
        claimed = UltralyticsYolo(_ReportsCuda(cpu.backend), cpu.info, cpu.spec, batch_size=2)

    assert isinstance(claimed.buffers, InputBuffers)
    assert "letterboxing on the CPU and copying to cuda:0" in caplog.text
    assert "streamer[gpu]" in caplog.text
    for expected, got in zip(cpu.detect(frames), claimed.detect(frames)):
        np.testing.assert_array_equal(expected.xyxy, got.xyxy)


def test_detection_model_when_the_backend_runs_on_the_cpu_uses_host_buffers(yolo_path):
    model = AutoModel.from_pretrained(str(yolo_path))

    assert model.backend.input_device == "cpu"
    assert isinstance(model.buffers, InputBuffers)
