"""Ultralytics YOLO classification: output (B, classes), probabilities (the export applies softmax).

A frame-level result: one full-frame box with the top-1 class and every class's score in
`class_scores`. With a `detector` dependency it classifies each detected box's crop instead, as
`ImageClassifier` does. Input: RGB / 255, letterboxed (Ultralytics itself centre-crops).
"""

from __future__ import annotations

import numpy as np

from ...frames import Detections, Frame
from ..entities import ModelDocument
from ..preprocess import InputSpec, Placement
from .classifier import ImageClassifier
from .yolo import UltralyticsMetadata


class UltralyticsClassify(UltralyticsMetadata, ImageClassifier):
    @classmethod
    def input_spec(cls, document: ModelDocument, input_size: tuple[int, int], dtype: np.dtype) -> InputSpec:
        return InputSpec(input_size[0], input_size[1], dtype)

    def decode(self, outputs: list[np.ndarray], placements: list[Placement], frames: list[Frame]) -> list[Detections]:
        scores = outputs[0][: len(frames)].reshape(len(frames), -1).astype(np.float32)
        return [self._top_class(row, frame) for row, frame in zip(scores, frames)]  # already softmaxed
