"""Ultralytics YOLOv8 / YOLO11 detection exports: output (B, 4 + classes, anchors), boxes as cx, cy, w, h."""

from __future__ import annotations

import ast

import numpy as np

from ...errors import UnknownArchitectureError
from ...frames import Detections, Frame
from ..backends.base import Backend
from ..entities import LoadOptions, ModelDocument
from ..postprocess import decode_yolo_batch
from ..preprocess import Placement
from .base import DetectionModel, clip_boxes


class UltralyticsYolo(DetectionModel):
    default_confidence = 0.25
    default_iou = 0.45
    stride = 32  # the largest feature map's stride: exports with dynamic height and width take any multiple
    decodes_on_device = True

    @classmethod
    def describe(cls, document: ModelDocument, backend: Backend, options: LoadOptions):  # type: ignore[override]
        """Class names and input size from the export's own metadata unless the document gives them."""
        names, size = super().describe(document, backend, options)
        if names and document.input_size:
            return names, size
        file_names, file_size = read_metadata(backend.metadata, f"model {document.model_id!r}")
        return names or file_names, options.input_size or document.input_size or file_size

    def decode(self, outputs: list[np.ndarray], placements: list[Placement], frames: list[Frame]) -> list[Detections]:
        """The whole batch at once, on the device when the outputs are CuPy arrays (and on the host,
        where it also beats image by image); only the kept boxes come back to the host."""
        found = decode_yolo_batch(outputs[0][: len(frames)], self.confidence, self.iou)
        return [
            Detections(xyxy=clip_boxes(placement.to_source(xyxy), frame), confidence=confidence, class_id=class_id)
            for (xyxy, confidence, class_id), placement, frame in zip(found, placements, frames)
        ]


def read_metadata(metadata: dict[str, str], what: str) -> tuple[tuple[str, ...], tuple[int, int]]:
    """Class names and input size (width, height) from an Ultralytics export's own metadata."""
    task = metadata.get("task")
    if task != "detect":
        raise UnknownArchitectureError(f"{what}: Ultralytics task {task!r} is not supported yet (only 'detect')")
    try:
        names = ast.literal_eval(metadata["names"])
        height, width = ast.literal_eval(metadata.get("imgsz", "[640, 640]"))
    except (KeyError, ValueError, SyntaxError) as exc:
        raise UnknownArchitectureError(f"{what}: unreadable Ultralytics metadata: {exc}") from exc
    class_names = tuple(str(names[i]) for i in sorted(names))
    return class_names, (int(width), int(height))


def is_ultralytics(metadata: dict[str, str]) -> bool:
    return metadata.get("author", "").lower().startswith("ultralytics") and "names" in metadata
