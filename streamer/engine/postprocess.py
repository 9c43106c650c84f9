"""Box decoding and non-maximum suppression for a whole batch at once, wherever the outputs live.

Written once against the part of NumPy that CuPy mirrors: `xp` is NumPy for host arrays and CuPy
for device arrays (CuPy is imported only when handed one). Nothing loops per box: images run side
by side, and only the kept rows come back to the host.

NMS here is Cluster-NMS (Zheng et al., 2021): with the boxes sorted best first, a box is kept when
no kept box before it overlaps it by more than the threshold. Iterating that rule from "keep every
valid box" reaches greedy NMS's answer exactly: after n rounds the first n + 1 boxes are settled,
and a keep-set that no longer changes is the only fixed point. Real outputs settle in a few rounds;
the worst case, a chain of boxes each overlapping only the next, takes one round per box.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from ..device.arrays import module_of, to_host

CLASS_OFFSET = 8192.0  # shifts each class's boxes apart so one NMS pass never mixes classes
PAIRS_PER_PASS = 1 << 22  # box pairs compared at once: a few (B, K, K) arrays of 32 MiB at most

Array = Any  # a NumPy or CuPy array
# One image's boxes on the host: xyxy (N, 4) float32, confidence (N,) float32, class_id (N,) int64.
HostBoxes = tuple[np.ndarray, np.ndarray, np.ndarray]


def stable_argsort(keys: Array, axis: int = -1) -> Array:
    """argsort keeping equal keys in index order (CuPy's sort is always stable and takes no `kind`)."""
    if isinstance(keys, np.ndarray):
        return np.argsort(keys, axis=axis, kind="stable")
    return keys.argsort(axis=axis)


def batched_nms(boxes: Array, scores: Array, valid: Array, iou_threshold: float) -> Array:
    """Greedy NMS for each image of a batch: boxes (B, K, 4) xyxy, scores and valid (B, K).

    Returns keep (B, K) bool: exactly the boxes `models.base.nms` keeps among each image's valid
    ones (best score first, equal scores in index order).
    """
    xp = module_of(boxes)
    order = stable_argsort(xp.where(valid, -scores, xp.inf), axis=1)
    sorted_boxes = xp.take_along_axis(boxes, order[:, :, None], axis=1)
    kept = suppress_sorted(sorted_boxes, xp.take_along_axis(valid, order, axis=1), iou_threshold)
    keep = xp.zeros_like(valid)
    keep[xp.arange(len(order))[:, None], order] = kept  # each row of `order` is a permutation
    return keep


def suppress_sorted(boxes: Array, valid: Array, iou_threshold: float) -> Array:
    """Greedy NMS keep (B, K) for boxes already sorted best first, a few images per pass."""
    xp = module_of(boxes)
    count, size = valid.shape
    step = max(1, PAIRS_PER_PASS // max(1, size * size))
    if step >= count:
        return _fixed_point(boxes, valid, iou_threshold)
    parts = [_fixed_point(boxes[i : i + step], valid[i : i + step], iou_threshold) for i in range(0, count, step)]
    return xp.concatenate(parts)


def _fixed_point(boxes: Array, valid: Array, iou_threshold: float) -> Array:
    """Iterate keep_j = valid_j and no kept i < j overlaps j, until it stops changing."""
    suppresses = _suppresses(boxes, iou_threshold)
    keep = valid.copy()
    for _ in range(valid.shape[1]):  # round n settles box n: at most K rounds, the last only confirming
        survivors = valid & ~(keep[:, :, None] & suppresses).any(axis=1)
        if bool((survivors == keep).all()):
            break
        keep = survivors
    return keep


def _suppresses(boxes: Array, iou_threshold: float) -> Array:
    """(B, K, K) bool: box i, ahead of box j, overlaps it by more than the threshold.

    The arithmetic is `models.base.nms`'s, step for step, so both compare the very same IoU values.
    """
    xp = module_of(boxes)
    x1, y1, x2, y2 = (boxes[:, :, k] for k in range(4))
    areas = (x2 - x1) * (y2 - y1)
    overlap = _pairwise(xp.minimum, x2)  # in place from here on: (B, K, K) arrays are the cost
    overlap -= _pairwise(xp.maximum, x1)
    xp.maximum(overlap, 0, out=overlap)
    height = _pairwise(xp.minimum, y2)
    height -= _pairwise(xp.maximum, y1)
    xp.maximum(height, 0, out=height)
    overlap *= height
    union = _pairwise(xp.add, areas)
    union -= overlap
    union += 1e-9
    iou = xp.divide(overlap, union, out=union)
    size = boxes.shape[1]
    ahead = xp.arange(size)[:, None] < xp.arange(size)[None, :]
    return ~(iou <= iou_threshold) & ahead  # `nms` keeps `iou <= threshold`: NaN suppresses there too


def _pairwise(function: Any, values: Array) -> Array:
    return function(values[:, :, None], values[:, None, :])


def decode_yolo_batch(predictions: Array, confidence: float, iou: float, max_keep: int = 300) -> list[HostBoxes]:
    """Decode Ultralytics YOLOv8 outputs (B, 4 + classes, anchors) on the array's own device.

    Per image: the best class of each anchor, anchors at or above `confidence`, class-aware NMS, at
    most `max_keep` boxes, best first. Returns per image host arrays (xyxy in input pixels,
    confidence, class_id), copying only the kept rows off the device.
    """
    xp = module_of(predictions)
    count = predictions.shape[0]
    scores = predictions[:, 4:, :]
    best = scores.max(axis=1)  # a reduction over a middle axis: NumPy's max is fast there, argmax is not
    above = best >= confidence
    size = int(above.sum(axis=1).max()) if count else 0  # the one sync before NMS
    if size == 0:
        return [_empty() for _ in range(count)]
    # Candidates first, in anchor order (a stable sort of a 0/1 key), then best first among them.
    anchors = stable_argsort((~above).astype(xp.int8), axis=1)[:, :size]
    valid = xp.take_along_axis(above, anchors, axis=1)
    score = xp.take_along_axis(best, anchors, axis=1).astype(xp.float32)
    order = stable_argsort(xp.where(valid, -score, xp.inf), axis=1)
    anchors, valid, score = (xp.take_along_axis(a, order, axis=1) for a in (anchors, valid, score))
    class_id = xp.take_along_axis(scores, anchors[:, None, :], axis=2).argmax(axis=1).astype(xp.int64)
    xyxy = _xyxy(xp, predictions, anchors)
    # float64 once shifted (int64 * float), as in `nms` image by image: the same IoU to the last bit.
    keep = suppress_sorted(xyxy + (class_id * CLASS_OFFSET)[:, :, None], valid, iou)
    keep &= xp.cumsum(keep.astype(xp.int32), axis=1) <= max_keep
    return _kept_on_host(keep, xyxy, score, class_id)


def _xyxy(xp: ModuleType, predictions: Array, anchors: Array) -> Array:
    """(B, K, 4) float32 corners of the chosen anchors' (cx, cy, w, h) boxes."""
    cx, cy, w, h = (xp.take_along_axis(predictions[:, k, :], anchors, axis=1).astype(xp.float32) for k in range(4))
    return xp.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1)


def _kept_on_host(keep: Array, xyxy: Array, score: Array, class_id: Array) -> list[HostBoxes]:
    """Split the kept rows (in order) per image, copying only those rows to the host."""
    xp = module_of(keep)
    rows = xp.nonzero(keep.reshape(-1))[0]
    ends = np.cumsum(to_host(keep.sum(axis=1)))[:-1]
    host = (to_host(xyxy.reshape(-1, 4)[rows]), to_host(score.reshape(-1)[rows]), to_host(class_id.reshape(-1)[rows]))
    return list(zip(*(np.split(array, ends) for array in host)))


def _empty() -> HostBoxes:
    return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
