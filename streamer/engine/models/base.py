"""What every detection model shares: batching into reusable buffers, then decoding raw outputs."""

from __future__ import annotations

import time
from typing import ClassVar, Protocol, Sequence

import numpy as np

from ...batcher import InputBuffers, InputSpec, Placement
from ...frames import Detections, Frame, ModelInfo


class Backend(Protocol):
    """Runs one input batch, returning the model's raw outputs in order."""

    name: str
    input_dtype: np.dtype
    input_shape: list[int | str]
    metadata: dict[str, str]

    def run(self, batch: np.ndarray) -> list[np.ndarray]: ...


class DetectionModel:
    """A detector: `detect(frames)` returns one Detections per frame, in source pixel coordinates.

    Subclasses set the defaults below and implement `decode`. `detect` may be called from several
    threads at once; each call borrows its own input buffer.
    """

    default_confidence: ClassVar[float] = 0.25
    default_iou: ClassVar[float] = 0.45

    def __init__(
        self,
        backend: Backend,
        info: ModelInfo,
        spec: InputSpec,
        *,
        confidence: float | None = None,
        iou: float | None = None,
        batch_size: int = 4,
    ) -> None:
        self.backend = backend
        self.info = info
        self.spec = spec
        self.confidence = self.default_confidence if confidence is None else confidence
        self.iou = self.default_iou if iou is None else iou
        self.batch_size = batch_size
        self.buffers = InputBuffers(spec, batch_size)

    def detect(self, frames: Sequence[Frame | np.ndarray]) -> list[Detections]:
        """Detect objects in frames (or RGB uint8 arrays)."""
        frames = [_as_frame(item) for item in frames]
        results: list[Detections] = []
        for start in range(0, len(frames), self.batch_size):
            results += self._detect_batch(frames[start : start + self.batch_size])
        return results

    def __call__(self, image: Frame | np.ndarray) -> Detections:
        return self.detect([image])[0]

    def _detect_batch(self, frames: list[Frame]) -> list[Detections]:
        buffer = self.buffers.acquire()
        try:
            inputs, placements = buffer.fill(frames)
            outputs = self.backend.run(inputs)
        finally:
            self.buffers.release(buffer)
        return self.decode(outputs, placements, frames)

    def decode(self, outputs: list[np.ndarray], placements: list[Placement], frames: list[Frame]) -> list[Detections]:
        raise NotImplementedError


def _as_frame(item: Frame | np.ndarray) -> Frame:
    if isinstance(item, Frame):
        return item
    if item.ndim != 3 or item.shape[2] != 3 or item.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image of shape (H, W, 3), got {item.dtype} {item.shape}")
    return Frame("image", 0, None, time.time(), image=item)


def clip_boxes(xyxy: np.ndarray, frame: Frame) -> np.ndarray:
    np.clip(xyxy[:, 0::2], 0, frame.width, out=xyxy[:, 0::2])
    np.clip(xyxy[:, 1::2], 0, frame.height, out=xyxy[:, 1::2])
    return xyxy


def nms(xyxy: np.ndarray, scores: np.ndarray, iou_threshold: float, max_keep: int = 300) -> np.ndarray:
    """Greedy non-maximum suppression; returns kept indices, best first."""
    order = np.argsort(-scores)
    areas = (xyxy[:, 2] - xyxy[:, 0]) * (xyxy[:, 3] - xyxy[:, 1])
    keep: list[int] = []
    while order.size and len(keep) < max_keep:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        top_left = np.maximum(xyxy[best, :2], xyxy[rest, :2])
        bottom_right = np.minimum(xyxy[best, 2:], xyxy[rest, 2:])
        overlap = np.prod(np.clip(bottom_right - top_left, 0, None), axis=1)
        iou = overlap / (areas[best] + areas[rest] - overlap + 1e-9)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)
