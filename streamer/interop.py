"""Adapters from streamer's values to other libraries' types (free functions, imported lazily)."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from .frames import IN_DATA, Detections, Result
from .masks import CropMasks

if TYPE_CHECKING:
    import supervision


def import_supervision() -> Any:
    """Import supervision without its warning about running on its NumPy backend (no OpenCV)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*OpenCV.*", category=UserWarning)
        import supervision

    return supervision


def to_supervision(
    result: Result | Detections, class_names: list[str] | None = None, *, masks: bool = True
) -> supervision.Detections:
    """Convert a Result (or bare Detections) to `supervision.Detections`.

    Class names go to `data["class_name"]` as supervision's own loaders do; tracker ids, when a
    `track` stage set them, to `tracker_id`; masks to `mask`, made dense (N, H, W) here, so pass
    `masks=False` when nothing downstream draws or reads them; keypoints, keypoint confidence, class
    scores, embeddings and OCR text to `data` under their field names; oriented boxes' corners are
    already `data["xyxyxyxy"]`, where supervision's OBB annotators look.
    """
    sv = import_supervision()
    detections, class_names = _unpacked(result, class_names)
    data: dict[str, np.ndarray] = {**detections.data, **detections.optional_data()}
    if class_names is not None:
        data["class_name"] = np.array(class_names, dtype=object).reshape(-1)
    return sv.Detections(
        xyxy=detections.xyxy.astype(np.float32, copy=False),
        confidence=detections.confidence,
        class_id=detections.class_id.astype(int, copy=False),
        tracker_id=None if detections.tracker_id is None else detections.tracker_id.astype(int, copy=False),
        mask=detections.mask.dense() if masks and detections.mask is not None else None,
        data=data,
    )


def to_supervision_keypoints(
    result: Result | Detections, class_names: list[str] | None = None
) -> supervision.KeyPoints:
    """A pose result's keypoints as `supervision.KeyPoints` (xy, keypoint_confidence, the boxes'
    detection_confidence, class_id, class names in `data["class_name"]`), for its EdgeAnnotator and
    VertexAnnotator; empty when there are none."""
    sv = import_supervision()
    detections, class_names = _unpacked(result, class_names)
    if detections.keypoints is None:
        return sv.KeyPoints.empty()
    data = {} if class_names is None else {"class_name": np.array(class_names, dtype=object).reshape(-1)}
    return sv.KeyPoints(
        xy=detections.keypoints.astype(np.float32, copy=False),
        keypoint_confidence=detections.keypoint_confidence,
        detection_confidence=detections.confidence,
        class_id=detections.class_id.astype(int, copy=False),
        data=data,
    )


def from_supervision(detections: supervision.Detections) -> Detections:
    """Convert `supervision.Detections` to streamer's, the inverse of `to_supervision`.

    `data["keypoints"]` of shape (N, K, 2) becomes `keypoints`, and `data`'s other entries named like
    Detections' optional fields (`keypoint_confidence`, `class_scores`, `embeddings`, `text`,
    `text_confidence`) become those fields; the rest of `data` (class names included) stays in `data`
    as arrays; masks (dense or supervision's CompactMask) become CropMasks; `metadata` is dropped.
    Boxes without scores (ground truth) get confidence 1.0; boxes without a class get class id -1.
    """
    n = len(detections)
    data = {key: np.asarray(value) for key, value in detections.data.items()}
    ours = [name for name in IN_DATA if name in data and (name != "keypoints" or _are_keypoints(data[name]))]
    fields = {name: _field(name, data.pop(name)) for name in ours}
    return Detections(
        xyxy=np.asarray(detections.xyxy, np.float32).reshape(n, 4),
        confidence=_or_full(detections.confidence, n, 1.0, np.float32),
        class_id=_or_full(detections.class_id, n, -1, np.int64),
        tracker_id=None if detections.tracker_id is None else detections.tracker_id.astype(np.int64),
        data=data,
        mask=_crops(detections.mask),
        **fields,
    )


def _field(name: str, value: np.ndarray) -> np.ndarray:
    return value.astype(object if name == "text" else np.float32, copy=False)


def _unpacked(result: Result | Detections, class_names: list[str] | None) -> tuple[Detections, list[str] | None]:
    """A Result's detections and class names, or bare Detections and the names given."""
    if isinstance(result, Result):
        return result.detections, result.class_names()
    return result, class_names


def _are_keypoints(value: np.ndarray | None) -> bool:
    return value is not None and value.ndim == 3 and value.shape[2] == 2


def _or_full(values: np.ndarray | None, n: int, fill: float, dtype: type) -> np.ndarray:
    return np.full(n, fill, dtype) if values is None else np.asarray(values).astype(dtype)


def _crops(mask: Any) -> CropMasks | None:
    """supervision's mask (dense, or its CompactMask of run lengths) as CropMasks."""
    if mask is None:
        return None
    return CropMasks.from_dense(mask if isinstance(mask, np.ndarray) else mask.to_dense())
