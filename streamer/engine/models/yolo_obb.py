"""Ultralytics YOLO oriented boxes: output (B, 4 + classes + 1, anchors), each anchor's rotated box as
cx, cy, w, h in input pixels, class scores, then its angle in radians.

Rotated NMS compares boxes by ProbIoU, as Ultralytics does. Results keep each box's corners in
`data["xyxyxyxy"]` (N, 4, 2) and its angle in `data["angle"]` (radians, in [0, pi/2), w and h swapped
to get there, as Ultralytics regularises them); `xyxy` is the corners' bounding box.
"""

from __future__ import annotations

import numpy as np

from ...frames import Detections, Frame
from ..preprocess import Placement
from .base import clip_boxes
from .yolo import UltralyticsYolo


class UltralyticsObb(UltralyticsYolo):
    def decode(self, outputs: list[np.ndarray], placements: list[Placement], frames: list[Frame]) -> list[Detections]:
        found = self.kept_rows(outputs[0][: len(frames)], extra=1, rotated=True)
        return [_oriented(kept, placement, frame) for kept, placement, frame in zip(found, placements, frames)]


def _oriented(kept, placement: Placement, frame: Frame) -> Detections:
    rotated, confidence, class_id, _ = kept
    rotated = regularized(rotated)
    corners = placement.to_source(corners_of(rotated))
    xyxy = np.concatenate([corners.min(axis=1), corners.max(axis=1)], axis=1) if len(corners) else np.zeros((0, 4))
    return Detections(
        xyxy=clip_boxes(xyxy.astype(np.float32), frame),
        confidence=confidence,
        class_id=class_id,
        data={"xyxyxyxy": corners, "angle": rotated[:, 4].copy()},
    )


def regularized(rotated: np.ndarray) -> np.ndarray:
    """(N, 5) cx, cy, w, h, angle with the angle in [0, pi/2), swapping w and h where it moved by pi/2."""
    out = rotated.astype(np.float32, copy=True)
    swap = np.mod(out[:, 4], np.pi) >= np.pi / 2
    out[swap, 2], out[swap, 3] = rotated[swap, 3], rotated[swap, 2]
    out[:, 4] = np.mod(out[:, 4], np.pi / 2)
    return out


def corners_of(rotated: np.ndarray) -> np.ndarray:
    """(N, 4, 2) float32 corners of (N, 5) rotated boxes, in Ultralytics' order (xywhr2xyxyxyxy)."""
    centre, (w, h, angle) = rotated[:, :2], rotated[:, 2:].T
    cos, sin = np.cos(angle), np.sin(angle)
    along = np.stack([w / 2 * cos, w / 2 * sin], axis=1)
    across = np.stack([-h / 2 * sin, h / 2 * cos], axis=1)
    corners = [centre + along + across, centre + along - across, centre - along - across, centre - along + across]
    return np.stack(corners, axis=1).astype(np.float32)
