"""Ultralytics YOLO pose: output (B, 4 + classes + K * D, anchors), each anchor's box, class scores and
K keypoints of D values (x, y in input pixels, and a score when D is 3), `kpt_shape` = (K, D) in the
export's metadata. Keypoints are named as the export's `kpt_names` name them; without those, 17
keypoints are COCO's. COCO's keypoints are joined by COCO's skeleton.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import numpy as np

from ...device import to_host
from ...frames import Detections, Frame
from ..entities import LoadOptions, ModelDocument, ModelPackage
from ..preprocess import Placement
from .base import DetectionModel, clip_boxes
from .yolo import UltralyticsYolo
from .yolo_metadata import keypoint_names, keypoint_shape

COCO_KEYPOINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip
# COCO's person skeleton, 0-based (pycocotools lists it 1-based).
COCO_SKELETON = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8),
    (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)  # fmt: skip


class UltralyticsPose(UltralyticsYolo):
    keypoints_shape: tuple[int, int] = (17, 3)

    @classmethod
    def load(  # type: ignore[override]
        cls, document: ModelDocument, package: ModelPackage, files: Mapping, options: LoadOptions,
        dependencies: Mapping[str, DetectionModel] | None = None,
    ) -> DetectionModel:
        """As every family loads, then the keypoints' shape, names and skeleton from the metadata."""
        model = super().load(document, package, files, options, dependencies)
        metadata, what = model.backend.metadata, f"model {document.model_id!r}"
        model.keypoints_shape = keypoint_shape(metadata, what)  # type: ignore[attr-defined]
        count = model.keypoints_shape[0]  # type: ignore[attr-defined]
        names = keypoint_names(metadata, what) or (COCO_KEYPOINTS if count == len(COCO_KEYPOINTS) else ())
        names = names if len(names) == count else ()
        skeleton = COCO_SKELETON if names == COCO_KEYPOINTS else ()
        model.info = dataclasses.replace(model.info, keypoint_names=names, skeleton=skeleton)
        return model

    def decode(self, outputs: list[np.ndarray], placements: list[Placement], frames: list[Frame]) -> list[Detections]:
        count, values = self.keypoints_shape
        found = self.kept_rows(outputs[0][: len(frames)], extra=count * values)
        return [
            _with_keypoints(kept, count, values, placement, frame)
            for kept, placement, frame in zip(found, placements, frames)
        ]


def _with_keypoints(kept, count: int, values: int, placement: Placement, frame: Frame) -> Detections:
    xyxy, confidence, class_id, extra = kept
    points = to_host(extra).astype(np.float32).reshape(len(xyxy), count, values)
    return Detections(
        xyxy=clip_boxes(placement.to_source(xyxy), frame),
        confidence=confidence,
        class_id=class_id,
        keypoints=placement.to_source(points[:, :, :2]),
        keypoint_confidence=np.ascontiguousarray(points[:, :, 2]) if values == 3 else None,
    )
