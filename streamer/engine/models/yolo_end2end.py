"""NMS-free Ultralytics exports: the network picks its best 300 boxes itself, so nothing is suppressed.

YOLOv10 and YOLO26 `end2end` (exported with `nms=False`): (B, 300, 6) x1, y1, x2, y2 in input pixels,
score, class. RT-DETR: (B, 300, 6) cx, cy, w, h as fractions of the input, score, class (before
Ultralytics 8.4: (B, 300, 4 + classes) with a sigmoid score per class).
"""

from __future__ import annotations

import numpy as np

from ...frames import Detections, Frame
from ..postprocess import decode_end2end_batch
from ..preprocess import Placement
from .base import clip_boxes
from .yolo import UltralyticsYolo


class UltralyticsEnd2End(UltralyticsYolo):
    normalized = False  # whether boxes are fractions of the input (cx, cy, w, h) rather than its pixels

    def decode(self, outputs: list[np.ndarray], placements: list[Placement], frames: list[Frame]) -> list[Detections]:
        found = decode_end2end_batch(
            outputs[0][: len(frames)],
            self.confidence,
            len(self.info.class_names),
            self.spec.width_height if self.normalized else None,
        )
        return [
            Detections(xyxy=clip_boxes(placement.to_source(xyxy), frame), confidence=confidence, class_id=class_id)
            for (xyxy, confidence, class_id), placement, frame in zip(found, placements, frames)
        ]


class RtDetr(UltralyticsEnd2End):
    normalized = True
    stride = None  # boxes are fractions of the input: always run it at its own size, never fitted to frames
