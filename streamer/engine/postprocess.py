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
from typing import Any, Callable

import numpy as np

from ..device.arrays import module_of, to_host

CLASS_OFFSET = 8192.0  # shifts each class's boxes apart so one NMS pass never mixes classes
MASK_STRIDE = 4  # YOLO segmentation's prototype masks are a quarter of the input's size
PAIRS_PER_PASS = 1 << 22  # box pairs compared at once: a few (B, K, K) arrays of 32 MiB at most

Array = Any  # a NumPy or CuPy array
Overlaps = Callable[[Array, float], Array]
# One image's boxes on the host: xyxy (N, 4) float32, confidence (N,) float32, class_id (N,) int64.
HostBoxes = tuple[np.ndarray, np.ndarray, np.ndarray]
# The same and each kept box's extra values (mask coefficients, keypoints...), where the outputs live.
KeptRows = tuple[np.ndarray, np.ndarray, np.ndarray, Array]


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


def suppress_sorted(boxes: Array, valid: Array, iou_threshold: float, overlaps: Overlaps | None = None) -> Array:
    """Greedy NMS keep (B, K) for boxes already sorted best first, a few images per pass.

    `overlaps(boxes, threshold)` says which box suppresses which, (B, K, K) bool; by default
    axis-aligned IoU of (B, K, 4) xyxy boxes, `rotated_suppresses` for (B, K, 5) rotated ones.
    """
    xp = module_of(boxes)
    overlaps = overlaps or _suppresses
    count, size = valid.shape
    step = max(1, PAIRS_PER_PASS // max(1, size * size))
    if step >= count:
        return _fixed_point(overlaps(boxes, iou_threshold), valid)
    parts = [
        _fixed_point(overlaps(boxes[i : i + step], iou_threshold), valid[i : i + step]) for i in range(0, count, step)
    ]
    return xp.concatenate(parts)


def _fixed_point(suppresses: Array, valid: Array) -> Array:
    """Iterate keep_j = valid_j and no kept i < j overlaps j, until it stops changing."""
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
    return _ahead_and_over(iou, iou_threshold)


def _ahead_and_over(iou: Array, iou_threshold: float) -> Array:
    xp = module_of(iou)
    size = iou.shape[1]
    ahead = xp.arange(size)[:, None] < xp.arange(size)[None, :]
    return ~(iou <= iou_threshold) & ahead  # `nms` keeps `iou <= threshold`: NaN suppresses there too


def rotated_suppresses(boxes: Array, iou_threshold: float) -> Array:
    """(B, K, K) bool for rotated boxes (B, K, 5) cx, cy, w, h, angle (radians): box i, ahead of box
    j, overlaps it by more than the threshold in ProbIoU (Llerena et al., 2021), the overlap of the
    boxes' Gaussians that Ultralytics' rotated NMS uses (1 - Hellinger distance)."""
    xp = module_of(boxes)
    a, b, c = _covariances(boxes)
    dx = boxes[:, :, None, 0] - boxes[:, None, :, 0]
    dy = boxes[:, :, None, 1] - boxes[:, None, :, 1]
    sa, sb, sc = _pairwise(xp.add, a), _pairwise(xp.add, b), _pairwise(xp.add, c)
    det = sa * sb - sc**2
    t1 = (sa * dy**2 + sb * dx**2) / (det + 1e-7) * 0.25
    t2 = (sc * -dx * dy) / (det + 1e-7) * 0.5
    own = xp.maximum(a * b - c**2, 0)
    t3 = xp.log(det / (4 * xp.sqrt(own[:, :, None] * own[:, None, :]) + 1e-7) + 1e-7) * 0.5
    distance = xp.clip(t1 + t2 + t3, 1e-7, 100.0)
    iou = 1 - xp.sqrt(1.0 - xp.exp(-distance) + 1e-7)
    return _ahead_and_over(iou, iou_threshold)


def _covariances(boxes: Array) -> tuple[Array, Array, Array]:
    """Each rotated box's Gaussian covariance (a, b, c): a uniform w x h rectangle turned by the angle."""
    xp = module_of(boxes)
    w2, h2 = boxes[:, :, 2] ** 2 / 12, boxes[:, :, 3] ** 2 / 12
    cos, sin = xp.cos(boxes[:, :, 4]), xp.sin(boxes[:, :, 4])
    return w2 * cos**2 + h2 * sin**2, w2 * sin**2 + h2 * cos**2, (w2 - h2) * cos * sin


def _pairwise(function: Any, values: Array) -> Array:
    return function(values[:, :, None], values[:, None, :])


def decode_yolo_batch(predictions: Array, confidence: float, iou: float, max_keep: int = 300) -> list[HostBoxes]:
    """Decode Ultralytics YOLOv8 outputs (B, 4 + classes, anchors) on the array's own device.

    Per image: the best class of each anchor, anchors at or above `confidence`, class-aware NMS, at
    most `max_keep` boxes, best first. Returns per image host arrays (xyxy in input pixels,
    confidence, class_id), copying only the kept rows off the device.
    """
    return [rows[:3] for rows in decode_yolo_rows(predictions, confidence, iou, max_keep=max_keep)]


def decode_yolo_rows(
    predictions: Array, confidence: float, iou: float, classes: int | None = None, max_keep: int = 300,
    rotated: bool = False,
) -> list[KeptRows]:
    """`decode_yolo_batch` for outputs (B, 4 + classes + extra, anchors) whose anchors carry more than
    boxes after their class scores: mask coefficients, keypoints, an angle (`classes` says where they
    start; None: no extra). Per image: boxes, confidence, class_id on the host, and each kept box's
    extra values (N, extra), left where the outputs live (a mask decoder wants them there).

    `rotated`: the last extra value is each box's angle, boxes come back as (N, 5) cx, cy, w, h,
    angle, and NMS compares rotated boxes (`rotated_suppresses`).
    """
    xp = module_of(predictions)
    count, channels = predictions.shape[:2]
    classes = channels - 4 if classes is None else classes
    scores = predictions[:, 4 : 4 + classes, :]
    best = scores.max(axis=1)  # a reduction over a middle axis: NumPy's max is fast there, argmax is not
    above = best >= confidence
    size = int(above.sum(axis=1).max()) if count else 0  # the one sync before NMS
    if size == 0:
        return [_empty_rows(xp, predictions, channels - 4 - classes, rotated) for _ in range(count)]
    # Candidates first, in anchor order (a stable sort of a 0/1 key), then best first among them.
    anchors = stable_argsort((~above).astype(xp.int8), axis=1)[:, :size]
    valid = xp.take_along_axis(above, anchors, axis=1)
    score = xp.take_along_axis(best, anchors, axis=1).astype(xp.float32)
    order = stable_argsort(xp.where(valid, -score, xp.inf), axis=1)
    anchors, valid, score = (xp.take_along_axis(a, order, axis=1) for a in (anchors, valid, score))
    class_id = xp.take_along_axis(scores, anchors[:, None, :], axis=2).argmax(axis=1).astype(xp.int64)
    # float64 once shifted (int64 * float), as in `nms` image by image: the same IoU to the last bit.
    shift = (class_id * CLASS_OFFSET)[:, :, None]
    if rotated:
        boxes = _columns(xp, predictions, anchors, (0, 1, 2, 3, channels - 1))
        keep = suppress_sorted(xp.concatenate([boxes[:, :, :2] + shift, boxes[:, :, 2:]], axis=2), valid, iou,
                               rotated_suppresses)
    else:
        boxes = _xyxy(xp, predictions, anchors)
        keep = suppress_sorted(boxes + shift, valid, iou)
    keep &= xp.cumsum(keep.astype(xp.int32), axis=1) <= max_keep
    rows, ends = _kept_rows(keep)
    extra = predictions[rows // size, 4 + classes :, anchors.reshape(-1)[rows]]  # (kept, extra): kept rows only
    return list(zip(*_on_host(rows, ends, boxes, score, class_id), xp.split(extra, ends)))


def _columns(xp: ModuleType, predictions: Array, anchors: Array, channels: tuple[int, ...]) -> Array:
    """(B, K, len(channels)) float32: those channels of the chosen anchors."""
    picked = (xp.take_along_axis(predictions[:, k, :], anchors, axis=1).astype(xp.float32) for k in channels)
    return xp.stack(list(picked), axis=-1)


def _xyxy(xp: ModuleType, predictions: Array, anchors: Array) -> Array:
    """(B, K, 4) float32 corners of the chosen anchors' (cx, cy, w, h) boxes."""
    return cxcywh_to_xyxy(xp, _columns(xp, predictions, anchors, (0, 1, 2, 3)))


def cxcywh_to_xyxy(xp: ModuleType, boxes: Array) -> Array:
    cx, cy, w, h = (boxes[..., k] for k in range(4))
    return xp.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1)


def decode_end2end_batch(
    predictions: Array, confidence: float, classes: int, normalized_to: tuple[int, int] | None = None
) -> list[HostBoxes]:
    """Decode NMS-free outputs (B, queries, 6): boxes, score, class per query, already the best
    `queries` of each image, so no NMS; the rows at or above `confidence` come back, in order.

    YOLOv10 / YOLO26 `end2end` exports give x1, y1, x2, y2 in input pixels (`normalized_to` None);
    RT-DETR gives cx, cy, w, h as fractions of the input (`normalized_to` its (width, height)), and
    its exports before Ultralytics 8.4 gave (B, queries, 4 + classes) sigmoid scores per class instead
    of score and class.
    """
    return [rows[:3] for rows in decode_end2end_rows(predictions, confidence, classes, normalized_to)]


def decode_end2end_rows(
    predictions: Array, confidence: float, classes: int, normalized_to: tuple[int, int] | None = None,
    rotated: bool = False,
) -> list[KeptRows]:
    """`decode_end2end_batch` for rows (B, queries, 6 + extra) that carry more after the class:
    mask coefficients, keypoints or an angle (YOLO26's segment, pose and obb `end2end` exports), as
    `decode_yolo_rows` returns them. `rotated`: the rows are cx, cy, w, h, score, class, angle, and
    boxes come back as (N, 5) cx, cy, w, h, angle."""
    xp = module_of(predictions)
    if normalized_to is not None and _scores_per_class(xp, predictions, classes):
        per_class = predictions[..., 4:]
        score, class_id, extra = per_class.max(axis=-1), per_class.argmax(axis=-1), predictions[..., :0]
    else:
        score, class_id, extra = predictions[..., 4], predictions[..., 5], predictions[..., 6:]
    boxes = predictions[..., :4].astype(xp.float32)
    if rotated:
        boxes = xp.concatenate([boxes, predictions[..., 6:7].astype(xp.float32)], axis=-1)
    elif normalized_to is not None:
        width, height = normalized_to
        boxes = cxcywh_to_xyxy(xp, boxes * xp.asarray([width, height, width, height], xp.float32))
    keep = score >= confidence
    rows, ends = _kept_rows(keep)
    extra = extra.reshape(len(keep.reshape(-1)), extra.shape[-1])[rows]
    return list(zip(*_on_host(rows, ends, boxes, score.astype(xp.float32), class_id.astype(xp.int64)),
                    xp.split(extra, ends)))


def _scores_per_class(xp: ModuleType, predictions: Array, classes: int) -> bool:
    """Whether the rows are (box, one score per class) rather than (box, score, class)."""
    columns = predictions.shape[-1]
    if columns != 6 or classes != 2:
        return columns == 4 + classes and columns != 6
    ids = predictions[..., 5]
    return not bool((ids == xp.round(ids)).all())  # two classes: only the values tell the layouts apart


def _kept_rows(keep: Array) -> tuple[Array, list[int]]:
    """The flat indices of the kept (B, K) entries, in order, and where each image's run ends."""
    xp = module_of(keep)
    rows = xp.nonzero(keep.reshape(-1))[0]
    return rows, np.cumsum(to_host(keep.sum(axis=1)))[:-1].tolist()


def _on_host(rows: Array, ends: list[int], boxes: Array, score: Array, class_id: Array) -> list[list[np.ndarray]]:
    """Boxes, scores and class ids of those rows, split per image, copying only them to the host."""
    flat = (boxes.reshape(-1, boxes.shape[-1]), score.reshape(-1), class_id.reshape(-1))
    return [np.split(to_host(array[rows]), ends) for array in flat]


def _empty_rows(xp: ModuleType, predictions: Array, extra: int, rotated: bool) -> KeptRows:
    boxes, score, class_id = _empty()
    return np.zeros((0, 5), np.float32) if rotated else boxes, score, class_id, xp.zeros((0, extra), predictions.dtype)


def _empty() -> HostBoxes:
    return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)


def crop_masks(
    proto: Array, coefficients: Array, bounds: np.ndarray, gain: float, offset: tuple[float, float],
    stride: float = MASK_STRIDE,
) -> list[np.ndarray]:
    """Instance masks of YOLO segmentation for the kept boxes only, each decoded at its box.

    proto (M, h, w): the prototype masks (one `stride`-th of the input); coefficients (N, M) each
    box's weights of them; bounds (N, 4) int each box's crop in source pixels (`CropMasks.box_bounds`);
    source pixel = (input pixel - offset) / gain. For each box only the part of `proto` under it is
    combined, sampled bilinearly at the crop's pixel centres (as upsampling the whole mask would,
    without making it) and thresholded at 0 (sigmoid 0.5). Runs where the arrays live; only the
    (y1 - y0, x1 - x0) bool bitmaps come to the host.
    """
    xp = module_of(proto)
    height, width = proto.shape[1:]
    bitmaps = []
    for (x0, y0, x1, y1), weights in zip(bounds.tolist(), coefficients):
        if x1 <= x0 or y1 <= y0:
            bitmaps.append(np.zeros((max(0, y1 - y0), max(0, x1 - x0)), bool))
            continue
        rows, (top, bottom) = _sampling(xp, y0, y1, gain, offset[1], stride, height)
        cols, (left, right) = _sampling(xp, x0, x1, gain, offset[0], stride, width)
        window = proto[:, top:bottom, left:right].astype(xp.float32)
        logits = (weights.astype(xp.float32) @ window.reshape(len(window), -1)).reshape(bottom - top, right - left)
        bitmaps.append(to_host(_bilinear(logits, rows, cols) > 0))
    return bitmaps


def _bilinear(values: Array, rows: tuple[Array, Array, Array], cols: tuple[Array, Array, Array]) -> Array:
    """`values` sampled at fractional (row, column) positions, rows first (the smaller pass)."""
    (top, bottom, down), (left, right, across) = rows, cols
    upper = values[top]
    vertical = upper + (values[bottom] - upper) * down[:, None]
    west = vertical[:, left]
    east = vertical[:, right]
    east -= west
    east *= across
    east += west
    return east


def _sampling(xp: ModuleType, start: int, end: int, gain: float, offset: float, stride: float, size: int):
    """Where source pixels [start, end) fall among the proto cells, as bilinear sampling reads them:
    (low cell, high cell, fraction toward high) relative to the window [first, last) of cells read."""
    centres = np.clip(((np.arange(start, end) + 0.5) * gain + offset) / stride - 0.5, 0, size - 1)
    low = np.floor(centres).astype(np.int64)
    high = np.minimum(low + 1, size - 1)
    first, last = int(low[0]), int(high[-1]) + 1  # centres only grow
    positions = (xp.asarray(low - first), xp.asarray(high - first), xp.asarray((centres - low).astype(np.float32)))
    return positions, (first, last)
