"""Ultralytics YOLOv8 / YOLO11 detection exports: output (B, 4 + classes, anchors), boxes as cx, cy, w, h.

The other Ultralytics tasks live next door (yolo_segment, yolo_pose, yolo_classify, yolo_obb,
yolo_end2end); every export says which it is in its own metadata, which `yolo_metadata` reads.
"""

from __future__ import annotations

import numpy as np

from ...frames import Detections, Frame
from ..backends.base import Backend
from ..entities import LoadOptions, ModelDocument
from ..postprocess import KeptRows, decode_yolo_rows
from ..preprocess import Placement
from .base import DetectionModel, clip_boxes
from .yolo_metadata import is_ultralytics, read_metadata

__all__ = ["UltralyticsMetadata", "UltralyticsYolo", "is_ultralytics", "read_metadata"]

class UltralyticsMetadata:
    """Class names and input size from the export's own metadata unless the document gives them."""

    @classmethod
    def describe(cls, document: ModelDocument, backend: Backend, options: LoadOptions):  # type: ignore[override]
        names, size = super().describe(document, backend, options)  # type: ignore[misc]
        if names and document.input_size:
            return names, size
        file_names, file_size = read_metadata(backend.metadata, f"model {document.model_id!r}")
        return names or file_names, options.input_size or document.input_size or file_size


class UltralyticsYolo(UltralyticsMetadata, DetectionModel):
    default_confidence = 0.25
    default_iou = 0.45
    stride = 32  # the largest feature map's stride: exports with dynamic height and width take any multiple
    decodes_on_device = True

    def decode(self, outputs: list[np.ndarray], placements: list[Placement], frames: list[Frame]) -> list[Detections]:
        """The whole batch at once, on the device when the outputs are CuPy arrays (and on the host,
        where it also beats image by image); only the kept boxes come back to the host."""
        found = self.kept_rows(outputs[0][: len(frames)])
        return [
            Detections(xyxy=clip_boxes(placement.to_source(xyxy), frame), confidence=confidence, class_id=class_id)
            for (xyxy, confidence, class_id, _), placement, frame in zip(found, placements, frames)
        ]

    def kept_rows(self, rows: np.ndarray, extra: int = 0, rotated: bool = False) -> list[KeptRows]:
        """Each image's boxes after NMS and their `extra` values (the last channels of each anchor)."""
        return decode_yolo_rows(rows, self.confidence, self.iou, rows.shape[1] - 4 - extra, rotated=rotated)
