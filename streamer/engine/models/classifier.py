"""Image classifiers: one score per class for the whole frame (or, with a detector, per box).

The input is the frame letterboxed to the model's size and normalised as `(pixel / 255 - mean) / std`
(one mean and std for all channels, from the model document's `extra`). The output is (B, classes),
probabilities or logits (softmax is applied when rows do not already sum to one).

With a `detector` dependency the model classifies each detected box's crop instead, keeping the
detector's boxes and taking the class from the classifier: a two-stage model in one call.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ...frames import Detections, Frame
from ..entities import ModelDocument
from ..preprocess import InputSpec, Placement
from .base import DetectionModel, _as_frame


class ImageClassifier(DetectionModel):
    default_confidence = 0.0
    default_input_size = (224, 224)

    @classmethod
    def input_spec(cls, document: ModelDocument, input_size: tuple[int, int], dtype: np.dtype) -> InputSpec:
        mean = float(document.extra.get("mean", 0.0))
        std = float(document.extra.get("std", 1.0))
        return InputSpec(input_size[0], input_size[1], dtype, scale=1 / (255 * std), offset=-mean / std, pad_value=0.0)

    def detect(self, frames: Sequence[Frame | np.ndarray]) -> list[Detections]:
        detector = self.dependencies.get("detector")
        if detector is None:
            return super().detect(frames)
        frames = [_as_frame(item) for item in frames]
        return [self._classify_boxes(frame, found) for frame, found in zip(frames, detector.detect(frames))]

    def decode(self, outputs: list[np.ndarray], placements: list[Placement], frames: list[Frame]) -> list[Detections]:
        probabilities = _as_probabilities(outputs[0].reshape(len(frames), -1))
        return [self._top_class(row, frame) for row, frame in zip(probabilities, frames)]

    def _top_class(self, probabilities: np.ndarray, frame: Frame) -> Detections:
        best = int(probabilities.argmax())
        if probabilities[best] < self.confidence:
            return Detections.empty()
        return Detections(
            xyxy=np.array([[0, 0, frame.width, frame.height]], np.float32),
            confidence=np.array([probabilities[best]], np.float32),
            class_id=np.array([best], np.int64),
            class_scores=probabilities[None].astype(np.float32),
        )

    def _classify_boxes(self, frame: Frame, found: Detections) -> Detections:
        if not len(found):
            return found
        crops = [_crop(frame, box) for box in found.xyxy]
        labels = super().detect(crops)
        class_id = np.array([label.class_id[0] if len(label) else -1 for label in labels], np.int64)
        score = np.array([label.confidence[0] if len(label) else 0.0 for label in labels], np.float32)
        data = {**found.data, "detector_class_id": found.class_id, "detector_confidence": found.confidence}
        kept = class_id >= 0
        scores = [label.class_scores[0] for label, keep in zip(labels, kept) if keep]
        return Detections(
            xyxy=found.xyxy[kept],
            confidence=score[kept],
            class_id=class_id[kept],
            keypoints=None if found.keypoints is None else found.keypoints[kept],
            class_scores=np.stack(scores) if scores else None,
            data={key: value[kept] for key, value in data.items()},
        )


def _as_probabilities(scores: np.ndarray) -> np.ndarray:
    scores = scores.astype(np.float32)
    if (scores >= 0).all() and np.allclose(scores.sum(axis=1), 1.0, atol=1e-3):
        return scores
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _crop(frame: Frame, box: np.ndarray) -> np.ndarray:
    x1, y1, x2, y2 = np.round(box).astype(int)
    x2, y2 = max(x2, x1 + 2), max(y2, y1 + 2)
    return np.ascontiguousarray(frame.image[max(0, y1) : y2, max(0, x1) : x2])
