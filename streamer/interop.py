"""Adapters from streamer's values to other libraries' types (free functions, imported lazily)."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from .frames import Detections, Result

if TYPE_CHECKING:
    import supervision


def import_supervision() -> Any:
    """Import supervision without its warning about running on its NumPy backend (no OpenCV)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*OpenCV.*", category=UserWarning)
        import supervision

    return supervision


def to_supervision(result: Result | Detections, class_names: list[str] | None = None) -> supervision.Detections:
    """Convert a Result (or bare Detections) to `supervision.Detections`.

    Class names go to `data["class_name"]` as supervision's own loaders do; keypoints, when present,
    to `data["keypoints"]`; tracker ids, when a `track` stage set them, to `tracker_id`.
    """
    sv = import_supervision()
    if isinstance(result, Result):
        detections, class_names = result.detections, result.class_names()
    else:
        detections = result
    data: dict[str, np.ndarray] = dict(detections.data)
    if class_names is not None:
        data["class_name"] = np.array(class_names, dtype=object).reshape(-1)
    if detections.keypoints is not None:
        data["keypoints"] = detections.keypoints
    return sv.Detections(
        xyxy=detections.xyxy.astype(np.float32, copy=False),
        confidence=detections.confidence,
        class_id=detections.class_id.astype(int, copy=False),
        tracker_id=None if detections.tracker_id is None else detections.tracker_id.astype(int, copy=False),
        data=data,
    )
