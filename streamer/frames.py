"""The values that flow through a pipeline: Frame in, Result out.

Nothing here imports PyAV, ONNX Runtime or torch: a Frame may hold a decoded PyAV frame, but only
converts it (lazily, once) when someone asks for its pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

import numpy as np


class _VideoFrameLike(Protocol):
    width: int
    height: int

    def to_ndarray(self, **kwargs: Any) -> np.ndarray: ...

    def reformat(self, *args: Any, **kwargs: Any) -> _VideoFrameLike: ...


class Frame:
    """One decoded picture from one source.

    `image` is an RGB uint8 array of shape (height, width, 3). When the frame came from a decoder it
    is converted on first access, so pipelines that never look at full-size pixels never pay for it.
    """

    __slots__ = ("source_id", "index", "pts", "wall_time", "width", "height", "_image", "_decoded")

    def __init__(
        self,
        source_id: str,
        index: int,
        pts: float | None,
        wall_time: float,
        image: np.ndarray | None = None,
        decoded: _VideoFrameLike | None = None,
    ) -> None:
        if image is None and decoded is None:
            raise ValueError("a Frame needs an image array or a decoded frame")
        self.source_id = source_id
        self.index = index
        self.pts = pts
        self.wall_time = wall_time
        self._image = image
        self._decoded = decoded
        if image is not None:
            self.height, self.width = int(image.shape[0]), int(image.shape[1])
        else:
            self.width, self.height = decoded.width, decoded.height  # type: ignore[union-attr]

    @property
    def image(self) -> np.ndarray:
        if self._image is None:
            from .scaling import to_rgb

            self._image = to_rgb(self._decoded)
        return self._image

    @property
    def decoded(self) -> _VideoFrameLike | None:
        """The decoder's own frame, when there is one (lets resizing use FFmpeg's scaler)."""
        return self._decoded

    def __repr__(self) -> str:
        return (
            f"Frame(source_id={self.source_id!r}, index={self.index}, pts={self.pts}, "
            f"size={self.width}x{self.height})"
        )


@dataclass(frozen=True)
class ModelInfo:
    """Where results came from: enough to reproduce them."""

    model_id: str
    architecture: str
    task: str
    backend: str
    package: str
    sha256: str
    class_names: tuple[str, ...]
    input_size: tuple[int, int]

    def provenance(self) -> dict[str, str]:
        return {
            "id": self.model_id,
            "architecture": self.architecture,
            "package": self.package,
            "backend": self.backend,
            "sha256": self.sha256,
        }


@dataclass
class Detections:
    """Boxes found in one frame, as parallel NumPy arrays (source pixel coordinates).

    xyxy: (N, 4) float32; confidence: (N,) float32; class_id: (N,) int64;
    keypoints: (N, K, 2) float32 or None (CenterFace's five facial landmarks, for example).
    """

    xyxy: np.ndarray
    confidence: np.ndarray
    class_id: np.ndarray
    keypoints: np.ndarray | None = None
    data: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.xyxy)
        if self.xyxy.shape != (n, 4):
            raise ValueError(f"xyxy must have shape (N, 4), got {self.xyxy.shape}")
        for name in ("confidence", "class_id"):
            if getattr(self, name).shape != (n,):
                raise ValueError(f"{name} must have shape ({n},), got {getattr(self, name).shape}")
        if self.keypoints is not None and len(self.keypoints) != n:
            raise ValueError(f"keypoints must have {n} rows, got {len(self.keypoints)}")

    @classmethod
    def empty(cls) -> Detections:
        return cls(
            xyxy=np.zeros((0, 4), np.float32),
            confidence=np.zeros(0, np.float32),
            class_id=np.zeros(0, np.int64),
        )

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index: np.ndarray | slice) -> Detections:
        keypoints = None if self.keypoints is None else self.keypoints[index]
        return Detections(
            xyxy=self.xyxy[index],
            confidence=self.confidence[index],
            class_id=self.class_id[index],
            keypoints=keypoints,
            data={key: value[index] for key, value in self.data.items()},
        )


@dataclass
class Result:
    """What the model (and the stages after it) made of one frame."""

    frame: Frame
    detections: Detections
    model: ModelInfo
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def source_id(self) -> str:
        return self.frame.source_id

    @property
    def frame_index(self) -> int:
        return self.frame.index

    def class_names(self) -> list[str]:
        return class_labels(self.model.class_names, self.detections.class_id)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form written by the JSONL sink (one line per frame)."""
        return {
            "source": self.frame.source_id,
            "frame_index": self.frame.index,
            "pts": self.frame.pts,
            "wall_time": self.frame.wall_time,
            "width": self.frame.width,
            "height": self.frame.height,
            "detections": detections_to_dicts(self.detections, self.class_names()),
            "model": self.model.provenance(),
            **self.extra,
        }


def class_labels(names: Sequence[str], class_ids: np.ndarray) -> list[str]:
    """Each class id's name (the id itself, as text, when the model names no such class)."""
    return [names[i] if 0 <= i < len(names) else str(i) for i in class_ids]


def detections_to_dicts(detections: Detections, names: list[str]) -> list[dict[str, Any]]:
    rows = []
    for i in range(len(detections)):
        row: dict[str, Any] = {
            "xyxy": [round(float(v), 2) for v in detections.xyxy[i]],
            "confidence": round(float(detections.confidence[i]), 4),
            "class_id": int(detections.class_id[i]),
            "class_name": names[i],
        }
        if detections.keypoints is not None:
            row["keypoints"] = [[round(float(x), 2), round(float(y), 2)] for x, y in detections.keypoints[i]]
        rows.append(row)
    return rows
