"""The moving-face clip the stage tests share (written once per session)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.media import write_moving_face_clip


@pytest.fixture(scope="session")
def moving_clip(tmp_path_factory: pytest.TempPathFactory, astronaut: np.ndarray) -> Path:
    """60 frames, 640 x 360, 15 fps: the astronaut's face moving left to right (see tests.media.face_box)."""
    return write_moving_face_clip(tmp_path_factory.mktemp("moving") / "moving.mp4", astronaut)
