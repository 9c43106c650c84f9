"""Crops of a frame's detections, and the `classify` stage: a classifier run on each detection's crop.

The crops are cut from the frame as decoded (source pixels), each box grown by `padding` and kept
inside the frame; the classifier letterboxes each crop to its own input size.
"""

from __future__ import annotations

from typing import Any

import anyio
import numpy as np

from ..config import configured
from ..config.schema import ClassifyStageConfig
from ..engine.models.classifier import _crop
from ..errors import ParameterError
from ..frames import Detections, Frame, Result, class_labels


def padded(xyxy: np.ndarray, padding: float, width: int, height: int) -> np.ndarray:
    """The boxes grown by `padding` times their width and height on each side, clipped to the frame."""
    grow = (xyxy[:, 2:] - xyxy[:, :2]) * padding
    grown = np.concatenate([xyxy[:, :2] - grow, xyxy[:, 2:] + grow], axis=1)
    return np.clip(grown, 0, [width, height, width, height]).astype(np.float32)


def box_crops(frame: Frame, xyxy: np.ndarray, padding: float = 0.0) -> list[np.ndarray]:
    """Each box's crop of the frame, RGB uint8 (H, W, 3)."""
    return [_crop(frame, box) for box in padded(xyxy, padding, frame.width, frame.height)]


class ClassifyStage:
    """Classify each detection's crop: the boxes stay, each gets the classifier's scores.

    Sets `data["crop_scores"]` (N, C) float32, in the classifier's classes (`classifier.info.class_names`,
    not the detector's, which is why they are not the boxes' `class_scores`; zeros for a box not
    classified) and, per box, the top class in
    `data["crop_class"]` (its name, "" when not classified), `data["crop_class_id"]` (int64, -1)
    and `data["crop_score"]` (float32, 0). Which boxes, how padded: see ClassifyStageConfig.
    `classifier` is a loaded classification model (`load_classify_stage` loads the config's).
    """

    def __init__(self, config: ClassifyStageConfig | None = None, /, *, classifier: Any, **options: Any) -> None:
        self.config = configured(ClassifyStageConfig, config, options)
        self.classifier = classifier
        self.classes = None if self.config.classes is None else frozenset(self.config.classes)

    async def __call__(self, result: Result) -> Result:
        chosen = self.chosen(result)
        result.detections = await anyio.to_thread.run_sync(self.classify, result.frame, result.detections, chosen)
        return result

    def chosen(self, result: Result) -> np.ndarray:
        """Which boxes to classify: of `classes`, confident enough, and not too small."""
        detections = result.detections
        sizes = detections.xyxy[:, 2:] - detections.xyxy[:, :2]
        keep = (detections.confidence >= self.config.min_confidence) & (sizes >= self.config.min_size).all(axis=1)
        if self.classes is not None:
            keep &= np.array([name in self.classes for name in result.class_names()], bool)
        return keep

    def classify(self, frame: Frame, detections: Detections, chosen: np.ndarray) -> Detections:
        """The detections with the classifier's answer for the `chosen` ones (blocking)."""
        names = self.classifier.info.class_names
        labels = self.classifier.detect(box_crops(frame, detections.xyxy[chosen], self.config.padding))
        rows = [class_scores(label, len(names)) for label in labels]
        scores = np.zeros((len(detections), len(rows[0]) if rows else len(names)), np.float32)
        if rows:
            scores[chosen] = rows
        best = np.where(chosen, scores.argmax(axis=1), -1) if scores.shape[1] else np.full(len(detections), -1)
        detections.data["crop_scores"] = scores
        detections.data["crop_class_id"] = best.astype(np.int64)
        named = class_labels(names, np.maximum(best, 0))
        detections.data["crop_class"] = np.array([name if i >= 0 else "" for i, name in zip(best, named)], object)
        detections.data["crop_score"] = np.where(chosen, scores.max(axis=1, initial=0.0), 0.0).astype(np.float32)
        return detections


def class_scores(label: Detections, classes: int) -> np.ndarray:
    """A frame-level classification's (C,) scores: its `class_scores`, else its top-1 alone."""
    if label.class_scores is not None:
        return label.class_scores[0]
    if "probabilities" in label.data:
        return label.data["probabilities"][0]
    scores = np.zeros(classes, np.float32)
    if len(label):
        scores[label.class_id[0]] = label.confidence[0]
    return scores


async def load_classify_stage(config: ClassifyStageConfig) -> ClassifyStage:
    """A classify stage with its classifier loaded."""
    from ..engine import AutoModel

    classifier = await AutoModel.load(config.model, device=config.device, threads=config.threads)
    if classifier.info.task != "classification":
        raise ParameterError(
            f"classify stage: model {config.model!r} is a {classifier.info.task} model, not a classification one"
        )
    return ClassifyStage(config, classifier=classifier)
