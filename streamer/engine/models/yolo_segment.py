"""Ultralytics YOLO instance segmentation: output0 (B, 4 + classes + 32, anchors), the detection rows
with 32 mask coefficients each, and output1 (B, 32, H/4, W/4), the prototype masks.

Masks are made for the boxes NMS keeps, each only under its box (see `postprocess.crop_masks`),
on the device where the outputs are.
"""

from __future__ import annotations

import numpy as np

from ...frames import Detections, Frame
from ...masks import CropMasks
from ..postprocess import crop_masks
from ..preprocess import Placement
from .base import clip_boxes
from .yolo import UltralyticsYolo


class UltralyticsSegment(UltralyticsYolo):
    def decode(self, outputs: list[np.ndarray], placements: list[Placement], frames: list[Frame]) -> list[Detections]:
        proto = outputs[1]
        found = self.kept_rows(outputs[0][: len(frames)], extra=proto.shape[1])
        return [
            _with_masks(kept, proto[i], placement, frame)
            for i, (kept, placement, frame) in enumerate(zip(found, placements, frames))
        ]


def _with_masks(kept, proto, placement: Placement, frame: Frame) -> Detections:
    xyxy, confidence, class_id, coefficients = kept
    xyxy = clip_boxes(placement.to_source(xyxy), frame)
    size = (frame.width, frame.height)
    bounds = CropMasks.box_bounds(xyxy, size)
    bitmaps = crop_masks(proto, coefficients, bounds, placement.gain, (placement.left, placement.top))
    return Detections(xyxy=xyxy, confidence=confidence, class_id=class_id, mask=CropMasks(bounds, bitmaps, size))
