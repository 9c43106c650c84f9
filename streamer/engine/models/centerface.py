"""CenterFace (MIT licence): a face detector with five landmarks per face.

Its four outputs are on a grid four times coarser than the input: a face-centre heatmap, the box
size as log-scale (height, width), the centre's sub-cell offset (y, x), and ten landmark values
(y, x pairs relative to the box).
"""

from __future__ import annotations

import numpy as np

from ...frames import Detections, Frame
from ..backends.base import Backend
from ..entities import LoadOptions, ModelDocument
from ..onnx_graph import with_dynamic_shapes
from ..preprocess import InputSpec, Placement
from .base import DetectionModel, clip_boxes, nms

STRIDE = 4


# CenterFace's published export fixes its input at 10 x 3 x 32 x 32; these names make it dynamic.
DYNAMIC_SHAPES: dict[str, list[str | int]] = {
    "input.1": ["batch", 3, "height", "width"],
    "537": ["batch", 1, "grid_h", "grid_w"],
    "538": ["batch", 2, "grid_h", "grid_w"],
    "539": ["batch", 2, "grid_h", "grid_w"],
    "540": ["batch", 10, "grid_h", "grid_w"],
}


class CenterFace(DetectionModel):
    """Input: RGB 0..255, no normalisation, letterboxed with black."""

    default_confidence = 0.5
    default_iou = 0.3
    default_input_size = (640, 384)
    stride = 32  # its backbone's coarsest stride: with the graph made dynamic it takes any multiple

    @classmethod
    def prepare_onnx(cls, model: bytes, cache_root: str | None = None) -> bytes:
        return with_dynamic_shapes(model, DYNAMIC_SHAPES, cache_root)

    @classmethod
    def describe(cls, document: ModelDocument, backend: Backend, options: LoadOptions):  # type: ignore[override]
        names, _ = super().describe(document, backend, options)
        size = options.input_size or document.input_size or cls.default_input_size  # the file says 32 x 32
        return names or ("face",), (int(size[0]), int(size[1]))

    @classmethod
    def input_spec(cls, document: ModelDocument, input_size: tuple[int, int], dtype: np.dtype) -> InputSpec:
        return InputSpec(input_size[0], input_size[1], dtype, scale=1.0, pad_value=0.0)

    def decode(self, outputs: list[np.ndarray], placements: list[Placement], frames: list[Frame]) -> list[Detections]:
        heatmap, scale, offset, landmarks = outputs
        return [
            self._decode_one(heatmap[i, 0], scale[i], offset[i], landmarks[i], placements[i], frames[i])
            for i in range(len(frames))
        ]

    def _decode_one(self, heatmap, scale, offset, landmarks, placement: Placement, frame: Frame) -> Detections:
        ys, xs = np.nonzero(heatmap > self.confidence)
        if not len(ys):
            return Detections.empty()
        height = np.exp(scale[0, ys, xs]) * STRIDE
        width = np.exp(scale[1, ys, xs]) * STRIDE
        left = np.maximum(0, (xs + offset[1, ys, xs] + 0.5) * STRIDE - width / 2)
        top = np.maximum(0, (ys + offset[0, ys, xs] + 0.5) * STRIDE - height / 2)
        xyxy = np.stack([left, top, left + width, top + height], axis=1).astype(np.float32)
        points = np.stack(
            [landmarks[1::2, ys, xs] * width + left, landmarks[0::2, ys, xs] * height + top], axis=-1
        ).transpose(1, 0, 2)
        confidence = heatmap[ys, xs].astype(np.float32)
        kept = nms(xyxy, confidence, self.iou)
        xyxy = clip_boxes(placement.to_source(xyxy[kept]), frame)
        keypoints = placement.to_source(points[kept].astype(np.float32))
        return Detections(
            xyxy=xyxy, confidence=confidence[kept], class_id=np.zeros(len(kept), np.int64), keypoints=keypoints
        )
