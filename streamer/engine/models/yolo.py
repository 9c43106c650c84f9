"""Ultralytics YOLOv8 / YOLO11 detection exports: output (B, 4 + classes, anchors), boxes as cx, cy, w, h."""

from __future__ import annotations

import ast

import numpy as np

from ...batcher import Placement
from ...errors import UnknownArchitectureError
from ...frames import Detections, Frame
from ..entities import LoadOptions, ModelDocument
from .base import Backend, DetectionModel, clip_boxes, nms

CLASS_OFFSET = 8192.0  # shifts each class's boxes apart so one NMS pass never mixes classes


class UltralyticsYolo(DetectionModel):
    default_confidence = 0.25
    default_iou = 0.45
    stride = 32  # the largest feature map's stride: exports with dynamic height and width take any multiple

    @classmethod
    def describe(cls, document: ModelDocument, backend: Backend, options: LoadOptions):  # type: ignore[override]
        """Class names and input size from the export's own metadata unless the document gives them."""
        names, size = super().describe(document, backend, options)
        if names and document.input_size:
            return names, size
        file_names, file_size = read_metadata(backend.metadata, f"model {document.model_id!r}")
        return names or file_names, options.input_size or document.input_size or file_size

    def decode(self, outputs: list[np.ndarray], placements: list[Placement], frames: list[Frame]) -> list[Detections]:
        predictions = outputs[0]
        return [self._decode_one(predictions[i], placements[i], frames[i]) for i in range(len(frames))]

    def _decode_one(self, prediction: np.ndarray, placement: Placement, frame: Frame) -> Detections:
        scores = prediction[4:]
        class_id = scores.argmax(axis=0)
        confidence = scores[class_id, np.arange(scores.shape[1])]
        keep = confidence >= self.confidence
        if not keep.any():
            return Detections.empty()
        cx, cy, w, h = prediction[:4, keep].astype(np.float32)
        xyxy = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
        confidence, class_id = confidence[keep].astype(np.float32), class_id[keep].astype(np.int64)
        kept = nms(xyxy + (class_id * CLASS_OFFSET)[:, None], confidence, self.iou)
        xyxy = clip_boxes(placement.to_source(xyxy[kept]), frame)
        return Detections(xyxy=xyxy, confidence=confidence[kept], class_id=class_id[kept])


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
