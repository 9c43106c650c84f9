"""Shared fixtures: generated media and the real model files the tests use."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import numpy as np
import pytest

from tests.media import write_clip

# The astronaut's face in scikit-image's 512 x 512 photo, measured by hand (x1, y1, x2, y2).
ASTRONAUT_FACE = (182.0, 72.0, 270.0, 180.0)


@pytest.fixture(scope="session")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 frames, 160 x 96, 30 fps, H.264."""
    return write_clip(tmp_path_factory.mktemp("media") / "clip.mp4")


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()


@pytest.fixture(scope="session")
def yolo_path() -> Path:
    """nudenet's 320n.onnx: a real Ultralytics YOLOv8n export with dynamic batch (test-only)."""
    try:
        distribution = importlib.metadata.distribution("nudenet")
    except importlib.metadata.PackageNotFoundError:
        pytest.fail("nudenet is a test dependency: pip install --no-deps nudenet==3.4.2")
    return Path(str(distribution.locate_file("nudenet/320n.onnx")))


@pytest.fixture(scope="session")
def centerface():
    from streamer.engine import AutoModel

    return AutoModel.from_pretrained("centerface")
