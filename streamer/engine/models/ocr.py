"""PP-OCR (Apache-2.0): text detection (DB) and recognition (CTC), as PaddleOCR's exports expect.

Both networks were trained on OpenCV's BGR images, so both are fed BGR.

Detection: the frame letterboxed into a multiple of 32 (black padding), normalised per channel
with ImageNet's mean and std (applied to B, G, R in that order, as PaddleOCR does); the output is a
(B, 1, H, W) text probability map at input resolution (sigmoid applied), turned into one
quadrilateral per text line by `ppocr_db`. Each box's `data["xyxyxyxy"]` holds its four corners
(top-left, top-right, bottom-right, bottom-left) and `xyxy` their bounds, in source pixels.

Recognition: a line image resized to height 48 keeping its aspect ratio (width at least 320, wider
lines wider), normalised as `(pixel / 255 - 0.5) / 0.5`, padded on the right with zeros; the output
is (B, T, C) per-step probabilities, read greedily (CTC: repeats merged, index 0 the blank). The
dictionary is the model file's own metadata `character`, one character a line: C = 1 (blank) +
its lines + 1 (a space, last). This Chinese-and-Latin model seldom writes a space between words
set a normal space apart ("AB12 CDE" reads "AB12CDE"); words further apart the detector finds as
lines of their own.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar, Sequence

import numpy as np

from ...device import to_host
from ...errors import ModelFormatError
from ...frames import Detections, Frame
from ..entities import ModelDocument
from ..preprocess import InputSpec, Placement, resized_rgb
from .base import DetectionModel, _as_frame
from .ppocr_db import DbOptions, reading_order, text_quads

DETECTION_MEAN = (0.485, 0.456, 0.406)  # PaddleOCR's order, applied to B, G, R
DETECTION_STD = (0.229, 0.224, 0.225)


class _PaddleOcr(DetectionModel):
    @classmethod
    def describe(cls, document, backend, options):  # type: ignore[no-untyped-def]
        names, size = super().describe(document, backend, options)
        return names or ("text",), size


class TextDetector(_PaddleOcr):
    """PP-OCR's DB text detector: `confidence` is DB's box threshold (the mean map inside a box)."""

    default_confidence = 0.6
    default_input_size = (960, 960)
    stride = 32
    db: ClassVar[DbOptions] = DbOptions()

    @classmethod
    def input_spec(cls, document: ModelDocument, input_size: tuple[int, int], dtype: np.dtype) -> InputSpec:
        return InputSpec(input_size[0], input_size[1], dtype, scale=1 / 255, pad_value=0.0)

    def _detect_batch(self, frames: list[Frame]) -> list[Detections]:
        with self._activate():  # the device's context, as DetectionModel._detect_batch (cuda:N)
            buffers = self._buffers_for(frames)
            buffer = buffers.acquire()
            try:
                inputs, placements = buffer.fill(frames)
                outputs = self.backend.run(_normalised_bgr(inputs))
            finally:
                buffers.release(buffer)  # after the run's reads, handed back to this stream (device/streams.py)
            return self.decode([to_host(output) for output in outputs], placements, frames)

    def decode(self, outputs: list[np.ndarray], placements: list[Placement], frames: list[Frame]) -> list[Detections]:
        options = dataclasses.replace(self.db, box_threshold=self.confidence)
        return [self._lines(outputs[0][i, 0], placements[i], frames[i], options) for i in range(len(frames))]

    def _lines(self, probability: np.ndarray, placement: Placement, frame: Frame, options: DbOptions) -> Detections:
        quads, scores = text_quads(probability, options)
        if not len(quads):
            return Detections.empty()
        quads = placement.to_source(quads)
        np.clip(quads[..., 0], 0, frame.width, out=quads[..., 0])
        np.clip(quads[..., 1], 0, frame.height, out=quads[..., 1])
        order = reading_order(quads)
        quads, scores = quads[order], scores[order]
        xyxy = np.concatenate([quads.min(axis=1), quads.max(axis=1)], axis=1)
        return Detections(
            xyxy=xyxy.astype(np.float32),
            confidence=scores,
            class_id=np.zeros(len(quads), np.int64),
            data={"xyxyxyxy": quads.astype(np.float32)},
        )


def _normalised_bgr(inputs):  # type: ignore[no-untyped-def]
    """A new batch, channels reversed and normalised (NumPy or CuPy alike; the buffer is left as filled)."""
    bgr = inputs[:, ::-1].copy()
    for channel, (mean, std) in enumerate(zip(DETECTION_MEAN, DETECTION_STD)):
        bgr[:, channel] -= mean
        bgr[:, channel] *= 1 / std
    return bgr


class TextRecognizer(_PaddleOcr):
    """PP-OCR's CTC recogniser. `read(images)` reads line images; `detect(frames)` reads each whole
    frame as one line (one full-frame box with `text` and `text_confidence`)."""

    default_confidence = 0.0
    default_input_size = (320, 48)

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.characters = characters_of(self.backend.metadata, self.info.model_id)

    def detect(self, frames: Sequence[Frame | np.ndarray]) -> list[Detections]:
        frames = [_as_frame(item) for item in frames]
        read = self.read([frame.image for frame in frames])
        return [_whole_frame(frame, text, score) for frame, (text, score) in zip(frames, read)]

    def read(self, images: Sequence[np.ndarray]) -> list[tuple[str, float]]:
        """Each RGB line image's text and mean character probability, batched by aspect ratio."""
        ratios = [image.shape[1] / max(1, image.shape[0]) for image in images]
        order = np.argsort(ratios, kind="stable")
        read: list[tuple[str, float]] = [("", 0.0)] * len(images)
        for start in range(0, len(images), self.batch_size):
            chunk = order[start : start + self.batch_size]
            batch = self._batch([images[i] for i in chunk], max(ratios[i] for i in chunk))
            probabilities = to_host(self.backend.run(batch)[0])
            for index, row in zip(chunk, probabilities):
                read[index] = ctc_greedy(row, self.characters)
        return read

    def _batch(self, images: list[np.ndarray], widest: float) -> np.ndarray:
        width, height = self.spec.width, self.spec.height
        batch_width = max(width, int(math.ceil(height * widest)))
        batch = np.zeros((len(images), 3, height, batch_width), self.spec.dtype)
        for slot, image in enumerate(images):
            line_width = min(batch_width, max(1, int(math.ceil(height * image.shape[1] / max(1, image.shape[0])))))
            pixels = resized_rgb(_as_frame(np.ascontiguousarray(image)), line_width, height)
            batch[slot, :, :, :line_width] = pixels[:, :, ::-1].transpose(2, 0, 1) / 127.5 - 1.0
        return batch


def line_image(image: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """The RGB pixels inside four corners (top-left, top-right, bottom-right, bottom-left), sampled
    level (bilinear, edges repeated) at the quad's own width and height, as PaddleOCR's
    `get_rotate_crop_image`; one much taller than wide is turned to read as a line."""
    top_left, top_right, _, bottom_left = corners.astype(np.float64)
    far_right, far_bottom = corners[2] - corners[3], corners[2] - corners[1]
    width = max(1, int(max(np.hypot(*(top_right - top_left)), np.hypot(*far_right))))
    height = max(1, int(max(np.hypot(*(bottom_left - top_left)), np.hypot(*far_bottom))))
    u = np.arange(width) / width
    v = np.arange(height) / height
    points = top_left + u[None, :, None] * (top_right - top_left) + v[:, None, None] * (bottom_left - top_left)
    line = _bilinear(image, points[..., 0], points[..., 1])
    return np.ascontiguousarray(np.rot90(line)) if height >= 1.5 * width else line


def _bilinear(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    rows, columns = image.shape[:2]
    x = np.clip(x, 0, columns - 1)
    y = np.clip(y, 0, rows - 1)
    x0, y0 = np.floor(x).astype(np.intp), np.floor(y).astype(np.intp)
    x1, y1 = np.minimum(x0 + 1, columns - 1), np.minimum(y0 + 1, rows - 1)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    top = image[y0, x0] * (1 - fx) + image[y0, x1] * fx
    bottom = image[y1, x0] * (1 - fx) + image[y1, x1] * fx
    return np.clip(top * (1 - fy) + bottom * fy + 0.5, 0, 255).astype(np.uint8)


def characters_of(metadata: dict[str, str], model_id: str) -> list[str]:
    """The CTC alphabet: the blank, the file's `character` lines, then a space."""
    if "character" not in metadata:
        raise ModelFormatError(
            f"model {model_id!r}: a PP-OCR recogniser needs its dictionary in the ONNX metadata key "
            "'character' (one character a line), and this backend or file has none"
        )
    return ["", *metadata["character"].splitlines(), " "]


def ctc_greedy(probabilities: np.ndarray, characters: list[str]) -> tuple[str, float]:
    """Best class per step, repeats merged, blanks dropped, spaces at either end trimmed; the
    confidence is the kept steps' mean."""
    best = probabilities.argmax(axis=1)
    kept = best != 0
    kept[1:] &= best[1:] != best[:-1]
    if not kept.any():
        return "", 0.0
    text = "".join(characters[i] if i < len(characters) else "" for i in best[kept])
    return text.strip(), float(probabilities[kept, best[kept]].mean())


def _whole_frame(frame: Frame, text: str, score: float) -> Detections:
    return Detections(
        xyxy=np.array([[0, 0, frame.width, frame.height]], np.float32),
        confidence=np.array([score], np.float32),
        class_id=np.zeros(1, np.int64),
        text=np.array([text], dtype=object),
        text_confidence=np.array([score], np.float32),
    )
