"""Model families, registered by (architecture, task, backend) and imported only when loaded."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ...errors import UnknownArchitectureError

if TYPE_CHECKING:
    from .base import DetectionModel

_ALL_BACKENDS = ("onnxruntime", "torch", "tensorrt")
_FAMILIES = {
    ("yolo", "object-detection"): "streamer.engine.models.yolo:UltralyticsYolo",
    ("yolo", "instance-segmentation"): "streamer.engine.models.yolo_segment:UltralyticsSegment",
    ("yolo", "keypoint-detection"): "streamer.engine.models.yolo_pose:UltralyticsPose",
    ("yolo", "classification"): "streamer.engine.models.yolo_classify:UltralyticsClassify",
    ("yolo", "oriented-object-detection"): "streamer.engine.models.yolo_obb:UltralyticsObb",
    ("yolo-end2end", "object-detection"): "streamer.engine.models.yolo_end2end:UltralyticsEnd2End",
    ("yolo-end2end", "instance-segmentation"): "streamer.engine.models.yolo_end2end:End2EndSegment",
    ("yolo-end2end", "keypoint-detection"): "streamer.engine.models.yolo_end2end:End2EndPose",
    ("yolo-end2end", "oriented-object-detection"): "streamer.engine.models.yolo_end2end:End2EndObb",
    ("rtdetr", "object-detection"): "streamer.engine.models.yolo_end2end:RtDetr",
    ("centerface", "face-detection"): "streamer.engine.models.centerface:CenterFace",
    ("classifier", "classification"): "streamer.engine.models.classifier:ImageClassifier",
    ("embedder", "embedding"): "streamer.engine.models.embedder:ImageEmbedder",
    ("ppocr", "text-detection"): "streamer.engine.models.ocr:TextDetector",
    ("ppocr", "text-recognition"): "streamer.engine.models.ocr:TextRecognizer",
}

# (architecture, task, backend) -> "module:Class". Third parties may add entries before loading.
REGISTRY: dict[tuple[str, str, str], str] = {
    (architecture, task, backend): target
    for (architecture, task), target in _FAMILIES.items()
    for backend in _ALL_BACKENDS
}


def architectures() -> list[str]:
    return sorted({architecture for architecture, _, _ in REGISTRY})


def is_registered(architecture: str, task: str, backend: str) -> bool:
    return (architecture, task, backend) in REGISTRY


def model_class(architecture: str, task: str, backend: str, what: str) -> type[DetectionModel]:
    """The class for this combination, imported now."""
    try:
        target = REGISTRY[(architecture, task, backend)]
    except KeyError:
        known = ", ".join(f"{a}/{t}" for a, t in sorted({(a, t) for a, t, _ in REGISTRY}))
        raise UnknownArchitectureError(
            f"{what}: no model family for architecture {architecture!r}, task {task!r} on {backend!r} "
            f"(known: {known})"
        ) from None
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)
