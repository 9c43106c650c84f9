"""The `anonymize` stage: blur or pixelate faces in the frame's own pixels.

It changes `frame.image`, so every sink that draws or stores pictures (video, snapshots, user
callbacks) gets the anonymised frame; detections and events are left as they are. supervision's
BlurAnnotator and PixelateAnnotator do the pixel work, with a strength scaled to each box.
"""

from __future__ import annotations

import functools
from typing import Any

import anyio
import numpy as np

from ..config import configured
from ..config.schema import AnonymizeStageConfig
from ..engine import DetectionModel
from ..frames import Result, class_labels
from ..interop import import_supervision


class AnonymizeStage:
    """Hide boxes from `detector` (a face detector) or, without one, the pipeline model's detections
    as the model found them (before any stage filtered or tracked them).

    `classes` and `min_confidence` pick which boxes; `padding` grows each box by that fraction of
    its size on every side; `strength` is the blur kernel (or pixel block) as a fraction of the
    box's longer side, so a face close to the camera is hidden as well as a distant one. Those come
    from an AnonymizeStageConfig or its keys as keyword options (its `model` is loaded by the caller).
    """

    def __init__(
        self, config: AnonymizeStageConfig | None = None, /, *, detector: DetectionModel | None = None, **options: Any
    ) -> None:
        config = configured(AnonymizeStageConfig, config, options)
        self.method = config.method
        self.detector = detector
        self.classes = frozenset(config.classes) if config.classes is not None else None
        self.min_confidence = config.min_confidence
        self.padding = config.padding
        self.strength = config.strength
        self.hidden = 0  # boxes hidden so far

    async def __call__(self, result: Result) -> Result:
        boxes = await self._boxes(result)
        if len(boxes):
            frame = result.frame
            frame.image = await anyio.to_thread.run_sync(self._hide, frame.image, boxes)
            self.hidden += len(boxes)
        return result

    async def _boxes(self, result: Result) -> np.ndarray:
        if self.detector is None:  # the model's own boxes: a stage before may have dropped some (a
            # tracker drops a face until its track is confirmed), but every one must be hidden
            found = result.model_detections if result.model_detections is not None else result.detections
            names = class_labels(result.model.class_names, found.class_id)
        else:
            found = (await anyio.to_thread.run_sync(self.detector.detect, [result.frame]))[0]
            names = class_labels(self.detector.info.class_names, found.class_id)
        keep = found.confidence >= self.min_confidence
        if self.classes is not None:
            keep &= np.array([name in self.classes for name in names], dtype=bool)
        return _grown(found.xyxy[keep], self.padding, result.frame.width, result.frame.height)

    def _hide(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        sv = import_supervision()
        for box in boxes:
            size = max(1, int(round(self.strength * max(box[2] - box[0], box[3] - box[1]))))
            _annotator(self.method, size).annotate(image, sv.Detections(xyxy=box[None].astype(np.float32)))
        return image


def _grown(xyxy: np.ndarray, padding: float, width: int, height: int) -> np.ndarray:
    """Boxes grown by `padding` of their size on each side, clipped to the frame, in whole pixels."""
    if not len(xyxy):
        return np.zeros((0, 4), np.int64)
    size = np.concatenate([xyxy[:, 2:] - xyxy[:, :2]] * 2, axis=1)
    grown = xyxy + padding * size * np.array([-1, -1, 1, 1])
    grown = np.clip(np.rint(grown), 0, [width, height, width, height]).astype(np.int64)
    return grown[(grown[:, 2] > grown[:, 0]) & (grown[:, 3] > grown[:, 1])]


@functools.lru_cache(maxsize=64)
def _annotator(method: str, size: int) -> Any:
    sv = import_supervision()
    if method == "blur":
        return sv.BlurAnnotator(kernel_size=max(3, size | 1))
    return sv.PixelateAnnotator(pixel_size=max(2, size))
