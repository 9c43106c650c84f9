"""DB post-processing (PP-OCR's text detector): a probability map in, one quadrilateral per text line out.

As PaddleOCR's `DBPostProcess`, in NumPy (no OpenCV):

    bitmap = map > threshold                 pixels that are text
    components                               8-connected regions, found from each row's runs
    min-area rectangle per region            rotating calipers over the region's convex hull
    score = mean map inside the rectangle    dropped below `box_threshold`
    unclip by area * ratio / perimeter       the DB map shrinks text; grow it back

PaddleOCR unclips with a polygon offset (pyclipper, round joins) and takes the min-area rectangle of
the result; for a rectangle that is the rectangle grown by the same distance on every side, which
is what `unclip` does here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DbOptions:
    threshold: float = 0.3  # map value that counts as text
    box_threshold: float = 0.6  # mean map value a region's rectangle needs
    unclip_ratio: float = 1.5
    min_side: float = 3.0  # rectangles thinner than this (input pixels) are noise
    max_candidates: int = 1000


def text_quads(probability: np.ndarray, options: DbOptions) -> tuple[np.ndarray, np.ndarray]:
    """Quadrilaterals (N, 4, 2) float32, corners clockwise from top-left, in map pixels, and their scores."""
    runs = _runs(probability > options.threshold)
    quads, scores = [], []
    for points in _components(runs)[: options.max_candidates]:
        box, short_side = min_area_rect(points)
        if short_side < options.min_side:
            continue
        score = mean_inside(probability, box)
        if score < options.box_threshold:
            continue
        box, short_side = unclip(box, options.unclip_ratio)
        if short_side < options.min_side + 2:
            continue
        quads.append(box)
        scores.append(score)
    if not quads:
        return np.zeros((0, 4, 2), np.float32), np.zeros(0, np.float32)
    return np.stack(quads).astype(np.float32), np.asarray(scores, np.float32)


def _runs(bitmap: np.ndarray) -> np.ndarray:
    """Each row's horizontal runs of True as (row, first, last) int64 rows, in row-major order."""
    active = np.flatnonzero(bitmap.any(axis=1))  # text covers few rows: look only at those
    padded = np.zeros((len(active), bitmap.shape[1] + 2), bool)
    padded[:, 1:-1] = bitmap[active]
    rows, columns = np.nonzero(padded[:, 1:] != padded[:, :-1])  # each run's start, then the column after it
    return np.stack([active[rows[0::2]], columns[0::2], columns[1::2] - 1], axis=1)


def _components(runs: np.ndarray) -> list[np.ndarray]:
    """The pixel-centre points that bound each 8-connected region: per row it spans, the first and
    last pixel (all its convex hull needs), regions in order of their first row."""
    if not len(runs):
        return []
    labels = _run_labels(runs)
    order = np.lexsort((runs[:, 0], labels))  # by region, then row (runs within a row stay in order)
    key = labels[order] * (int(runs[:, 0].max()) + 1) + runs[order, 0]
    row_starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    rows = runs[order[row_starts], 0]
    firsts = np.minimum.reduceat(runs[order, 1], row_starts)
    lasts = np.maximum.reduceat(runs[order, 2], row_starts)
    points = np.stack([np.r_[firsts, lasts], np.r_[rows, rows]], axis=1).astype(np.float64)
    region = labels[order[row_starts]]
    bounds = np.flatnonzero(region[1:] != region[:-1]) + 1
    n = len(rows)
    return [points[np.r_[group, group + n]] for group in np.split(np.arange(n), bounds)]


def _run_labels(runs: np.ndarray) -> np.ndarray:
    """A label per run, equal for runs that touch (8-connectivity) through any chain."""
    rows, firsts, lasts = runs[:, 0], runs[:, 1], runs[:, 2]
    key = int(lasts.max()) + 3  # row * key + column sorts runs exactly as they are ordered
    # Runs of the row above that touch run s: last >= first_s - 1 and first <= last_s + 1.
    lo = np.searchsorted(rows * key + lasts, (rows - 1) * key + firsts - 1, side="left")
    hi = np.searchsorted(rows * key + firsts, (rows - 1) * key + lasts + 1, side="right")
    counts = np.maximum(hi - lo, 0)
    below = np.repeat(np.arange(len(runs)), counts)
    above = np.repeat(lo, counts) + (np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts))
    return _connected(len(runs), below, above)


def _connected(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Union of edges (a, b) over n nodes by min-label hooking and pointer jumping."""
    parent = np.arange(n)
    while True:
        parent = _compressed(parent)
        root_a, root_b = parent[a], parent[b]
        differ = root_a != root_b
        if not differ.any():
            return parent
        low = np.minimum(root_a[differ], root_b[differ])
        np.minimum.at(parent, root_a[differ], low)
        np.minimum.at(parent, root_b[differ], low)


def _compressed(parent: np.ndarray) -> np.ndarray:
    while True:
        grand = parent[parent]
        if np.array_equal(grand, parent):
            return parent
        parent = grand


def convex_hull(points: np.ndarray) -> np.ndarray:
    """Andrew's monotone chain over (x, y) points: the hull's corners (M, 2), collinear ones dropped."""
    ordered = np.unique(points, axis=0).tolist()  # sorted by x, then y
    if len(ordered) < 3:
        return np.array(ordered, np.float64).reshape(-1, 2)
    chains: list[list[list[float]]] = []
    for sequence in (ordered, ordered[::-1]):
        chain: list[list[float]] = []
        for x, y in sequence:
            while len(chain) >= 2:
                (ox, oy), (ax, ay) = chain[-2], chain[-1]
                if (ax - ox) * (y - oy) - (ay - oy) * (x - ox) > 0:
                    break
                chain.pop()
            chain.append([x, y])
        chains.append(chain[:-1])
    return np.array(chains[0] + chains[1], np.float64)


def min_area_rect(points: np.ndarray) -> tuple[np.ndarray, float]:
    """The smallest rectangle around the points (4, 2), ordered as PaddleOCR's `get_mini_boxes`,
    and its shorter side. One edge of the hull lies on it, so only those angles are tried."""
    hull = convex_hull(points)
    if len(hull) < 3:
        low, high = points.min(axis=0), points.max(axis=0)
        corners = np.array([low, [high[0], low[1]], high, [low[0], high[1]]])
        return _ordered(corners), float(min(high - low))
    edges = np.roll(hull, -1, axis=0) - hull
    angles = np.arctan2(edges[:, 1], edges[:, 0])
    axis_u = np.stack([np.cos(angles), np.sin(angles)], axis=1)  # (E, 2)
    axis_v = np.stack([-axis_u[:, 1], axis_u[:, 0]], axis=1)
    u, v = axis_u @ hull.T, axis_v @ hull.T  # (E, M)
    areas = (u.max(1) - u.min(1)) * (v.max(1) - v.min(1))
    best = int(areas.argmin())
    (u0, u1), (v0, v1) = (u[best].min(), u[best].max()), (v[best].min(), v[best].max())
    corners = np.array([[u0, v0], [u1, v0], [u1, v1], [u0, v1]]) @ np.stack([axis_u[best], axis_v[best]])
    return _ordered(corners), float(min(u1 - u0, v1 - v0))


def _ordered(corners: np.ndarray) -> np.ndarray:
    """Top-left, top-right, bottom-right, bottom-left: the two leftmost by y, then the two rightmost."""
    by_x = corners[np.argsort(corners[:, 0], kind="stable")]
    left, right = by_x[:2], by_x[2:]
    top_left, bottom_left = left[np.argsort(left[:, 1], kind="stable")]
    top_right, bottom_right = right[np.argsort(right[:, 1], kind="stable")]
    return np.array([top_left, top_right, bottom_right, bottom_left])


def mean_inside(probability: np.ndarray, box: np.ndarray) -> float:
    """Mean map value over the pixels whose centres lie in the (convex) box, as `box_score_fast`."""
    height, width = probability.shape
    x0, y0 = np.clip(np.floor(box.min(axis=0)).astype(int), 0, [width - 1, height - 1])
    x1, y1 = np.clip(np.ceil(box.max(axis=0)).astype(int), 0, [width - 1, height - 1])
    ys, xs = np.mgrid[y0 : y1 + 1, x0 : x1 + 1]
    inside = np.ones(ys.shape, bool)
    for start, stop in zip(box, np.roll(box, -1, axis=0)):
        edge = stop - start
        inside &= edge[0] * (ys - start[1]) - edge[1] * (xs - start[0]) >= -0.5 * np.hypot(*edge)
    region = probability[y0 : y1 + 1, x0 : x1 + 1]
    return float(region[inside].mean()) if inside.any() else 0.0


def unclip(box: np.ndarray, ratio: float) -> tuple[np.ndarray, float]:
    """The rectangle grown by area * ratio / perimeter on every side, and its new shorter side."""
    along = box[1] - box[0]
    across = box[3] - box[0]
    width, height = np.hypot(*along), np.hypot(*across)
    if width == 0 or height == 0:
        return box, 0.0
    distance = width * height * ratio / (2 * (width + height))
    du, dv = along / width * distance, across / height * distance
    grown = box + np.array([-du - dv, du - dv, du + dv, -du + dv])
    return _ordered(grown), float(min(width, height) + 2 * distance)


def reading_order(quads: np.ndarray, tolerance: float = 10.0) -> np.ndarray:
    """Indices top to bottom, left to right within a line (PaddleOCR's `sorted_boxes`)."""
    order = sorted(range(len(quads)), key=lambda i: (quads[i, 0, 1], quads[i, 0, 0]))
    for i in range(len(order) - 1):
        for j in range(i, -1, -1):
            a, b = quads[order[j]], quads[order[j + 1]]
            if abs(b[0, 1] - a[0, 1]) < tolerance and b[0, 0] < a[0, 0]:
                order[j], order[j + 1] = order[j + 1], order[j]
            else:
                break
    return np.asarray(order, np.int64)
