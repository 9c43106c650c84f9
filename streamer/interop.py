"""Adapters from streamer's values to other libraries' types (free functions, imported lazily)."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from .frames import Detections, Result
from .masks import CropMasks

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
    to `data["keypoints"]`; tracker ids, when a `track` stage set them, to `tracker_id`; masks to `mask`.
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
        mask=None if detections.mask is None else detections.mask.dense(),
        data=data,
    )


def from_supervision(detections: supervision.Detections) -> Detections:
    """Convert `supervision.Detections` to streamer's, the inverse of `to_supervision`.

    `data["keypoints"]` of shape (N, K, 2) becomes `keypoints`; the rest of `data` (class names
    included) stays in `data` as arrays; a compact mask is made dense; `metadata` is dropped.
    Boxes without scores (ground truth) get confidence 1.0; boxes without a class get class id -1.
    """
    n = len(detections)
    data = {key: np.asarray(value) for key, value in detections.data.items()}
    keypoints = data.pop("keypoints") if _are_keypoints(data.get("keypoints")) else None
    return Detections(
        xyxy=np.asarray(detections.xyxy, np.float32).reshape(n, 4),
        confidence=_or_full(detections.confidence, n, 1.0, np.float32),
        class_id=_or_full(detections.class_id, n, -1, np.int64),
        keypoints=None if keypoints is None else keypoints.astype(np.float32, copy=False),
        tracker_id=None if detections.tracker_id is None else detections.tracker_id.astype(np.int64),
        data=data,
        mask=_crops(detections.mask),
    )


def _are_keypoints(value: np.ndarray | None) -> bool:
    return value is not None and value.ndim == 3 and value.shape[2] == 2


def _or_full(values: np.ndarray | None, n: int, fill: float, dtype: type) -> np.ndarray:
    return np.full(n, fill, dtype) if values is None else np.asarray(values).astype(dtype)


def _crops(mask: Any) -> CropMasks | None:
    """supervision's mask (dense, or its CompactMask of run lengths) as CropMasks."""
    if mask is None:
        return None
    return CropMasks.from_dense(mask if isinstance(mask, np.ndarray) else mask.to_dense())
