"""NMS-free Ultralytics exports: the network picks its best 300 boxes itself, so nothing is suppressed.

YOLOv10 and YOLO26 `end2end` (exported with `nms=False`): (B, 300, 6) x1, y1, x2, y2 in input pixels,
score, class; YOLO26's segment, pose and obb heads add their values after the class (32 mask
coefficients, K * D keypoint values, the angle, with boxes then cx, cy, w, h), the segment export
its prototype masks as a second output. RT-DETR: (B, 300, 6) cx, cy, w, h as fractions of the
input, score, class (before Ultralytics 8.4: (B, 300, 4 + classes) with a sigmoid score per class).
"""

from __future__ import annotations

import numpy as np

from ..postprocess import KeptRows, decode_end2end_rows
from .yolo import UltralyticsYolo
from .yolo_obb import UltralyticsObb
from .yolo_pose import UltralyticsPose
from .yolo_segment import UltralyticsSegment


class NmsFree:
    """The rows the network kept, at or above the confidence threshold: `kept_rows` without NMS."""

    normalized = False  # whether boxes are fractions of the input (cx, cy, w, h) rather than its pixels

    def kept_rows(self, rows: np.ndarray, extra: int = 0, rotated: bool = False) -> list[KeptRows]:
        size = self.spec.width_height if self.normalized else None  # type: ignore[attr-defined]
        classes = len(self.info.class_names)  # type: ignore[attr-defined]
        return decode_end2end_rows(rows, self.confidence, classes, size, rotated)  # type: ignore[attr-defined]


class UltralyticsEnd2End(NmsFree, UltralyticsYolo):
    pass


class End2EndSegment(NmsFree, UltralyticsSegment):
    pass


class End2EndPose(NmsFree, UltralyticsPose):
    pass


class End2EndObb(NmsFree, UltralyticsObb):
    pass


class RtDetr(UltralyticsEnd2End):
    normalized = True
    stride = None  # boxes are fractions of the input: always run it at its own size, never fitted to frames
