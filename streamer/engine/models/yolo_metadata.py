"""What an Ultralytics export says about itself in its ONNX metadata: which family it is, its class
names and input size (plain text parsing: resolving reads it without importing NumPy or a runtime)."""

from __future__ import annotations

import ast

from ...errors import UnknownArchitectureError

# Ultralytics' task names -> streamer's.
ULTRALYTICS_TASKS = {
    "detect": "object-detection",
    "segment": "instance-segmentation",
    "pose": "keypoint-detection",
    "classify": "classification",
    "obb": "oriented-object-detection",
}


def read_metadata(metadata: dict[str, str], what: str) -> tuple[tuple[str, ...], tuple[int, int]]:
    """Class names and input size (width, height) from an Ultralytics export's own metadata."""
    try:
        names = ast.literal_eval(metadata["names"])
        height, width = ast.literal_eval(metadata.get("imgsz", "[640, 640]"))
    except (KeyError, ValueError, SyntaxError) as exc:
        raise UnknownArchitectureError(f"{what}: unreadable Ultralytics metadata: {exc}") from exc
    class_names = tuple(str(names[i]) for i in sorted(names))
    return class_names, (int(width), int(height))


def is_ultralytics(metadata: dict[str, str]) -> bool:
    return metadata.get("author", "").lower().startswith("ultralytics") and "names" in metadata


def ultralytics_family(metadata: dict[str, str]) -> tuple[str, str] | None:
    """(architecture, task) of an Ultralytics export from its metadata; None for another file.

    RT-DETR says so in `head` (8.3+) or its description; NMS-free heads in `end2end` (8.4+), YOLOv10
    exports before that always were. An unknown task is passed on as it is (loading then lists the
    families there are).
    """
    if not metadata.get("author", "").lower().startswith("ultralytics"):
        return None
    task = ULTRALYTICS_TASKS.get(metadata.get("task", "detect"), metadata.get("task", "detect"))
    head = metadata.get("head", "")
    described = metadata.get("description", "").lower().replace("-", "")
    if head.startswith("RTDETR") or "rtdetr" in described:
        return "rtdetr", task
    if metadata.get("end2end", "").lower() == "true" or ("end2end" not in metadata and head == "v10Detect"):
        return "yolo-end2end", task
    return "yolo", task


def keypoint_shape(metadata: dict[str, str], what: str) -> tuple[int, int]:
    """A pose export's `kpt_shape`: (keypoints, values per keypoint: 2 for x, y or 3 with a score)."""
    try:
        count, values = ast.literal_eval(metadata.get("kpt_shape", "[17, 3]"))
    except (ValueError, SyntaxError, TypeError) as exc:
        raise UnknownArchitectureError(f"{what}: unreadable Ultralytics kpt_shape: {exc}") from exc
    return int(count), int(values)


def keypoint_names(metadata: dict[str, str], what: str) -> tuple[str, ...]:
    """A pose export's own keypoint names (`kpt_names`, per class: those of its first class), or ()
    when it has none (exports of models trained before Ultralytics 8.3.200 or so)."""
    if "kpt_names" not in metadata:
        return ()
    try:
        per_class = ast.literal_eval(metadata["kpt_names"])
        names = per_class[min(per_class)] if isinstance(per_class, dict) else per_class
    except (ValueError, SyntaxError, TypeError, KeyError) as exc:
        raise UnknownArchitectureError(f"{what}: unreadable Ultralytics kpt_names: {exc}") from exc
    return tuple(str(name) for name in names)
