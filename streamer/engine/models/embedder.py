"""Image embedders: one L2-normalised vector per image, or per detected box's crop, to re-identify by.

The input is the image letterboxed to the model's size as RGB in [0, 1] (a model that wants another
normalisation has it in its graph, as mobilenetv2-reid has ImageNet's); the output is (B, D) at any
scale: each row is L2-normalised here, so the cosine similarity of two embeddings is their dot product.

`embed(images)` and `embed_boxes(frame, xyxy)` return the (N, D) float32 array. `detect` fits the
other families: on whole frames, one full-frame box per frame carrying its `embeddings` (1, D); with a
`detector` dependency, the detector's boxes, each with its crop's embedding.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import numpy as np

from ...frames import Detections, Frame
from ..entities import ModelDocument
from ..preprocess import InputSpec, Placement
from .base import DetectionModel, _as_frame
from .classifier import _crop


class ImageEmbedder(DetectionModel):
    default_confidence = 0.0
    default_input_size = (224, 224)

    @classmethod
    def input_spec(cls, document: ModelDocument, input_size: tuple[int, int], dtype: np.dtype) -> InputSpec:
        return InputSpec(input_size[0], input_size[1], dtype, scale=1 / 255, pad_value=0.5)

    def embed(self, images: Sequence[Frame | np.ndarray]) -> np.ndarray:
        """(N, D) float32, each row of unit length: one per image (RGB uint8 arrays or frames)."""
        if not len(images):
            return np.zeros((0, self.dimensions), np.float32)
        return np.concatenate([found.embeddings for found in super().detect(images)])

    def embed_boxes(self, frame: Frame | np.ndarray, xyxy: np.ndarray) -> np.ndarray:
        """(N, D): the embedding of each box's crop of the frame (boxes in source pixels)."""
        frame = _as_frame(frame)
        return self.embed([_crop(frame, box) for box in xyxy])

    @functools.cached_property
    def dimensions(self) -> int:
        """D, found by embedding one blank image."""
        return self.embed([np.full((32, 32, 3), 128, np.uint8)]).shape[1]

    def detect(self, frames: Sequence[Frame | np.ndarray]) -> list[Detections]:
        detector = self.dependencies.get("detector")
        if detector is None:
            return super().detect(frames)
        frames = [_as_frame(item) for item in frames]
        return [
            dataclasses.replace(found, embeddings=self.embed_boxes(frame, found.xyxy))
            for frame, found in zip(frames, detector.detect(frames))
        ]

    def decode(self, outputs: list[np.ndarray], placements: list[Placement], frames: list[Frame]) -> list[Detections]:
        embeddings = unit_rows(outputs[0].reshape(len(frames), -1))
        return [
            Detections(
                xyxy=np.array([[0, 0, frame.width, frame.height]], np.float32),
                confidence=np.ones(1, np.float32),
                class_id=np.zeros(1, np.int64),
                embeddings=row[None],
            )
            for row, frame in zip(embeddings, frames)
        ]


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Each row scaled to length 1 (a zero row stays zero), as float32."""
    vectors = vectors.astype(np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)
