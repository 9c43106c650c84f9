"""Instance masks held compactly: per box, a bool bitmap cropped to that box's integer bounds.

A frame with 50 people at 1080p would need 50 x 2 MB as dense bitmaps; as crops it needs the boxes'
areas. `dense()` makes the full-frame form for whoever asks for it (supervision, drawing by hand);
`rle()` is COCO's uncompressed run-length encoding over the full frame (what the JSONL sink writes).
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np


class CropMasks:
    """N masks: `boxes` (N, 4) int32 `x0, y0, x1, y1` (x1, y1 exclusive, inside the frame), `bitmaps` a
    list of N bool arrays of shape (y1 - y0, x1 - x0), `frame_size` the frame's (width, height).

    Indexing selects masks as `Detections` selects boxes (an integer gives one mask, a slice, a
    boolean mask or an index array several); `==` compares the masks' pixels, whatever their crops.
    """

    __slots__ = ("boxes", "bitmaps", "frame_size")

    def __init__(self, boxes: np.ndarray, bitmaps: Sequence[np.ndarray], frame_size: tuple[int, int]) -> None:
        self.boxes = np.asarray(boxes, np.int32).reshape(-1, 4)
        self.bitmaps = [np.asarray(bitmap, bool) for bitmap in bitmaps]
        self.frame_size = (int(frame_size[0]), int(frame_size[1]))
        if len(self.bitmaps) != len(self.boxes):
            raise ValueError(f"CropMasks has {len(self.boxes)} boxes but {len(self.bitmaps)} bitmaps")
        width, height = self.frame_size
        for i, ((x0, y0, x1, y1), bitmap) in enumerate(zip(self.boxes.tolist(), self.bitmaps)):
            if not (0 <= x0 <= x1 <= width and 0 <= y0 <= y1 <= height):
                raise ValueError(f"mask {i}'s box {[x0, y0, x1, y1]} is not inside the {width}x{height} frame")
            if bitmap.shape != (y1 - y0, x1 - x0):
                raise ValueError(f"mask {i}'s bitmap is {bitmap.shape}, its box needs {(y1 - y0, x1 - x0)}")

    @staticmethod
    def box_bounds(xyxy: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
        """The integer crop of each float box (floor the top left, ceil the bottom right, clipped to
        the frame): what a model crops its masks to, so every producer crops alike."""
        width, height = frame_size
        xyxy = np.asarray(xyxy, np.float64).reshape(-1, 4)
        low = np.floor(np.clip(xyxy[:, :2], 0, (width, height)))
        high = np.maximum(np.ceil(np.clip(xyxy[:, 2:], 0, (width, height))), low)
        return np.concatenate([low, high], axis=1).astype(np.int32)

    @classmethod
    def empty(cls, frame_size: tuple[int, int]) -> CropMasks:
        return cls(np.zeros((0, 4), np.int32), [], frame_size)

    @classmethod
    def from_dense(cls, masks: np.ndarray) -> CropMasks:
        """(N, H, W) bool masks, each cropped to its own set pixels' extent (no pixel is lost)."""
        masks = np.asarray(masks, bool)
        if masks.ndim != 3:
            raise ValueError(f"dense masks must have shape (N, H, W), got {masks.shape}")
        boxes = np.zeros((len(masks), 4), np.int32)
        bitmaps = []
        for i, mask in enumerate(masks):
            cols, rows = np.flatnonzero(mask.any(axis=0)), np.flatnonzero(mask.any(axis=1))
            if len(cols):
                boxes[i] = cols[0], rows[0], cols[-1] + 1, rows[-1] + 1
            x0, y0, x1, y1 = boxes[i]
            bitmaps.append(mask[y0:y1, x0:x1])
        return cls(boxes, bitmaps, (masks.shape[2], masks.shape[1]))

    def __len__(self) -> int:
        return len(self.boxes)

    def __getitem__(self, index: int | slice | list[int] | np.ndarray) -> CropMasks:
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        rows = np.arange(len(self))[index]
        return CropMasks(self.boxes[rows], [self.bitmaps[i] for i in rows], self.frame_size)

    def __iter__(self) -> Iterator[np.ndarray]:
        """Each mask as a dense (H, W) bool array."""
        return (self.dense_row(i) for i in range(len(self)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CropMasks):
            return NotImplemented
        if len(self) != len(other) or self.frame_size != other.frame_size:
            return False
        return all(_same_pixels(self._tight(i), other._tight(i)) for i in range(len(self)))

    def __repr__(self) -> str:
        return f"CropMasks(n={len(self)}, frame_size={self.frame_size}, pixels={int(self.areas().sum())})"

    def dense_row(self, i: int) -> np.ndarray:
        """Mask i over the whole frame, (H, W) bool."""
        width, height = self.frame_size
        out = np.zeros((height, width), bool)
        x0, y0, x1, y1 = self.boxes[i]
        out[y0:y1, x0:x1] = self.bitmaps[i]
        return out

    def dense(self) -> np.ndarray:
        """Every mask over the whole frame, (N, H, W) bool: big, make it only when something needs it."""
        width, height = self.frame_size
        out = np.zeros((len(self), height, width), bool)
        for i, ((x0, y0, x1, y1), bitmap) in enumerate(zip(self.boxes.tolist(), self.bitmaps)):
            out[i, y0:y1, x0:x1] = bitmap
        return out

    def areas(self) -> np.ndarray:
        """Set pixels per mask, (N,) int64."""
        return np.array([int(bitmap.sum()) for bitmap in self.bitmaps], np.int64)

    def centroids(self) -> np.ndarray:
        """Each mask's centre of mass in frame pixels, (N, 2) float32 x, y (pixel centres at +0.5);
        NaN for a mask with no pixel set."""
        out = np.full((len(self), 2), np.nan, np.float32)
        for i, ((x0, y0, _, _), bitmap) in enumerate(zip(self.boxes.tolist(), self.bitmaps)):
            area = bitmap.sum()
            if area:
                out[i, 0] = x0 + 0.5 + (bitmap.sum(axis=0) * np.arange(bitmap.shape[1])).sum() / area
                out[i, 1] = y0 + 0.5 + (bitmap.sum(axis=1) * np.arange(bitmap.shape[0])).sum() / area
        return out

    def rle(self) -> list[dict[str, Any]]:
        """COCO uncompressed RLE per mask over the full frame: `{"size": [height, width], "counts":
        [...]}`, runs in column-major order starting with a (possibly 0) run of unset pixels, as
        `pycocotools.mask.frPyObjects` reads it. Built from the crop: the frame is never made dense."""
        return [self._rle_row(i) for i in range(len(self))]

    def _rle_row(self, i: int) -> dict[str, Any]:
        width, height = self.frame_size
        x0, y0, x1, y1 = self.boxes[i].tolist()
        columns = np.zeros((x1 - x0, height), bool)
        columns[:, y0:y1] = self.bitmaps[i].T
        flat = np.concatenate([[False], columns.ravel(), [False]])
        edges = np.flatnonzero(flat[1:] != flat[:-1]) + x0 * height  # where set runs start and end
        counts = np.diff(np.concatenate([[0], edges, [width * height]])).tolist()
        if len(counts) > 1 and counts[-1] == 0:
            counts.pop()
        return {"size": [height, width], "counts": counts}

    def _tight(self, i: int) -> tuple[tuple[int, int], np.ndarray]:
        """Mask i cropped to its set pixels: (top-left offset, bitmap); ((0, 0), empty) when none is set."""
        bitmap = self.bitmaps[i]
        cols, rows = np.flatnonzero(bitmap.any(axis=0)), np.flatnonzero(bitmap.any(axis=1))
        if not len(cols):
            return (0, 0), np.zeros((0, 0), bool)
        x0, y0 = self.boxes[i, :2].tolist()
        return (x0 + int(cols[0]), y0 + int(rows[0])), bitmap[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def _same_pixels(a: tuple[tuple[int, int], np.ndarray], b: tuple[tuple[int, int], np.ndarray]) -> bool:
    return a[0] == b[0] and a[1].shape == b[1].shape and bool(np.array_equal(a[1], b[1]))
