"""The values that flow through a pipeline: Frame in, Result out.

Nothing here imports PyAV, ONNX Runtime or torch: a Frame may hold a decoded PyAV frame, but only
converts it (lazily, once) when someone asks for its pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Protocol, Sequence, overload

import numpy as np

from .masks import CropMasks


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

    __slots__ = ("source_id", "index", "pts", "wall_time", "session", "width", "height", "_image", "_decoded")

    def __init__(
        self,
        source_id: str,
        index: int,
        pts: float | None,
        wall_time: float,
        image: np.ndarray | None = None,
        decoded: _VideoFrameLike | None = None,
        session: int = 0,
    ) -> None:
        if image is None and decoded is None:
            raise ValueError("a Frame needs an image array or a decoded frame")
        self.source_id = source_id
        self.index = index
        self.pts = pts
        self.wall_time = wall_time  # capture time (Unix s): a camera's by its stream's clock, else decode time
        self.session = session  # which connection (or loop) of the source: state keyed on it resets
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

    @image.setter
    def image(self, image: np.ndarray) -> None:
        """Replace the pixels (an anonymising stage does), keeping the frame's size. The decoder's
        frame is let go, so nothing downstream can reach the original picture through `decoded`."""
        if image.shape[:2] != (self.height, self.width):
            raise ValueError(f"the new image is {image.shape[1]}x{image.shape[0]}, the frame {self.width}x{self.height}")
        self._image = image
        self._decoded = None

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
    keypoint_names: tuple[str, ...] = ()  # what each of a pose model's K keypoints is ("nose", ...)
    skeleton: tuple[tuple[int, int], ...] = ()  # keypoint index pairs joined when drawn (0-based)
    files: tuple[tuple[str, str], ...] = ()  # (name, sha256) of each file of the package loaded

    def provenance(self) -> dict[str, str]:
        return {
            "id": self.model_id,
            "architecture": self.architecture,
            "package": self.package,
            "backend": self.backend,
            "sha256": self.sha256,
        }


@dataclass(eq=False)
class Detections:
    """Boxes found in one frame, as parallel NumPy arrays (source pixel coordinates).

    xyxy: (N, 4) float32; confidence: (N,) float32; class_id: (N,) int64. Every other field is
    optional (None when the model does not make it), with N rows, kept in step by indexing:
    keypoints: (N, K, 2) float32 x, y (a pose model's joints, CenterFace's five landmarks);
    keypoint_confidence: (N, K) float32, each keypoint's score;
    tracker_id: (N,) int64 (set by a tracking stage; unique across sources and reconnects);
    mask: CropMasks, each box's instance mask cropped to the box (a dense (N, H, W) bool array given
    here is cropped on construction); class_scores: (N, C) float32, a classifier's score per class;
    embeddings: (N, D) float32 appearance vectors; text: (N,) object array of str and
    text_confidence: (N,) float32, what OCR read in each box;
    data: more per-box arrays, N rows each; oriented boxes keep their corners in
    `data["xyxyxyxy"]` (N, 4, 2) float32, as supervision does, `xyxy` being their bounding box.
    A frame-level classification is one full-frame box with the top-1 class and `class_scores` (1, C).

    It behaves like `supervision.Detections`: `d[0]` and `d[-1]` are one-box Detections, a slice, a
    boolean mask or an index array selects boxes, `d["key"]` is `d.data.get("key")`, `==` compares
    every field's values, and iterating yields supervision's tuples,
    `(xyxy, mask, confidence, class_id, tracker_id, data)` per box, the mask a dense (H, W) bool row,
    keypoints and the other optional arrays in `data` under their field names (what iterating
    `to_supervision(d)` yields). `streamer.interop` converts both ways.
    """

    xyxy: np.ndarray
    confidence: np.ndarray
    class_id: np.ndarray
    keypoints: np.ndarray | None = None
    tracker_id: np.ndarray | None = None
    data: dict[str, np.ndarray] = field(default_factory=dict)
    mask: CropMasks | None = None
    keypoint_confidence: np.ndarray | None = None
    class_scores: np.ndarray | None = None
    embeddings: np.ndarray | None = None
    text: np.ndarray | None = None
    text_confidence: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.xyxy)
        if self.xyxy.shape != (n, 4):
            raise ValueError(f"xyxy must have shape (N, 4), got {self.xyxy.shape}")
        for name in ("confidence", "class_id"):
            if getattr(self, name).shape != (n,):
                raise ValueError(f"{name} must have shape ({n},), got {getattr(self, name).shape}")
        if isinstance(self.mask, np.ndarray):
            self.mask = CropMasks.from_dense(self.mask)
        if self.keypoints is not None or self.mask is not None or self.keypoint_confidence is not None:
            self._check_rows(n)
        for name in ("tracker_id", "text", "text_confidence"):
            if getattr(self, name) is not None and getattr(self, name).shape != (n,):
                raise ValueError(f"{name} must have shape ({n},), got {getattr(self, name).shape}")
        for name in ("class_scores", "embeddings"):
            value = getattr(self, name)
            if value is not None and (value.ndim != 2 or len(value) != n):
                raise ValueError(f"{name} must have shape ({n}, C), got {value.shape}")

    def _check_rows(self, n: int) -> None:
        for name in ("keypoints", "mask"):
            if getattr(self, name) is not None and len(getattr(self, name)) != n:
                raise ValueError(f"{name} must have {n} rows, got {len(getattr(self, name))}")
        if self.keypoint_confidence is not None:
            k = self.keypoints.shape[1] if self.keypoints is not None else self.keypoint_confidence.shape[-1]
            if self.keypoint_confidence.shape != (n, k):
                shape = self.keypoint_confidence.shape
                raise ValueError(f"keypoint_confidence must have shape ({n}, {k}), got {shape}")

    @classmethod
    def empty(cls) -> Detections:
        return cls(
            xyxy=np.zeros((0, 4), np.float32),
            confidence=np.zeros(0, np.float32),
            class_id=np.zeros(0, np.int64),
        )

    def __len__(self) -> int:
        return len(self.xyxy)

    @overload
    def __getitem__(self, index: str) -> np.ndarray | None: ...

    @overload
    def __getitem__(self, index: int | slice | list[int] | np.ndarray) -> Detections: ...

    def __getitem__(self, index: str | int | slice | list[int] | np.ndarray) -> Detections | np.ndarray | None:
        if isinstance(index, str):
            return self.data.get(index)
        if isinstance(index, (int, np.integer)):
            index = [int(index)]  # a one-box Detections, as supervision's; out of range raises IndexError
        return Detections(
            xyxy=self.xyxy[index],
            confidence=self.confidence[index],
            class_id=self.class_id[index],
            data={key: value[index] for key, value in self.data.items()},
            **{name: _rows(getattr(self, name), index) for name in OPTIONAL_FIELDS},
        )

    def optional_data(self) -> dict[str, np.ndarray]:
        """The optional per-box arrays that are set, by field name (masks left out): what goes into
        supervision's `data`."""
        return {name: getattr(self, name) for name in IN_DATA if getattr(self, name) is not None}

    def __iter__(self) -> Iterator[tuple[np.ndarray, Any, Any, Any, Any, dict[str, Any]]]:
        """Per box, supervision's `(xyxy, mask, confidence, class_id, tracker_id, data)`."""
        data = {**self.data, **self.optional_data()}
        for i in range(len(self)):
            yield (
                self.xyxy[i],
                None if self.mask is None else self.mask.dense_row(i),
                self.confidence[i],
                self.class_id[i],
                _rows(self.tracker_id, i),
                {key: value[i] for key, value in data.items()},
            )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Detections):
            return NotImplemented
        names = ("xyxy", "confidence", "class_id", *OPTIONAL_FIELDS)
        if not all(_same(getattr(self, name), getattr(other, name)) for name in names):
            return False
        return self.data.keys() == other.data.keys() and all(_same(self.data[k], other.data[k]) for k in self.data)


IN_DATA = ("keypoints", "keypoint_confidence", "class_scores", "embeddings", "text", "text_confidence")
OPTIONAL_FIELDS = ("tracker_id", "mask", *IN_DATA)  # Detections' per-box fields that may be None


def _rows(array: np.ndarray | CropMasks | None, index: Any) -> Any:
    return None if array is None else array[index]


def _same(a: np.ndarray | CropMasks | None, b: np.ndarray | CropMasks | None) -> bool:
    if a is None or b is None:
        return a is b
    if isinstance(a, CropMasks) or isinstance(b, CropMasks):
        return a == b
    return bool(np.array_equal(a, b))


class _OfAFrame:
    """What Results and Events share: the frame they are about."""

    frame: Frame
    model: ModelInfo

    @property
    def source_id(self) -> str:
        return self.frame.source_id

    @property
    def frame_index(self) -> int:
        return self.frame.index

    def identity(self) -> str:
        """What makes it unique: the model and the frame (for idempotency keys)."""
        frame = self.frame
        return f"{self.model.sha256}\0{frame.source_id}\0{frame.index}\0{frame.pts!r}\0{frame.wall_time!r}"


@dataclass
class Result(_OfAFrame):
    """What the model (and the stages after it) made of one frame."""

    frame: Frame
    detections: Detections
    model: ModelInfo
    extra: dict[str, Any] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    shapes: list[Shape] = field(default_factory=list)
    model_detections: Detections | None = None  # what the model found, whatever stages did since

    def __post_init__(self) -> None:
        if self.model_detections is None:
            self.model_detections = self.detections

    def class_names(self) -> list[str]:
        return class_labels(self.model.class_names, self.detections.class_id)

    def emit(self, kind: str, **details: Any) -> Event:
        """Raise an event about this frame (sinks with `kinds = ["events"]` receive it)."""
        event = Event(kind, self.frame, self.model, details)
        self.events.append(event)
        return event

    def to_dict(self, embeddings: bool = False) -> dict[str, Any]:
        """The JSON-ready form written by the JSONL sink (one line per frame), schema RESULTS_SCHEMA
        (docs/results.md). Embeddings are left out unless asked for: they are big."""
        detections, names = self.detections, self.class_names()
        line: dict[str, Any] = {
            "schema": RESULTS_SCHEMA,
            "source": self.frame.source_id,
            "frame_index": self.frame.index,
            "pts": self.frame.pts,
            "wall_time": self.frame.wall_time,
            "width": self.frame.width,
            "height": self.frame.height,
        }
        if self._classifies_the_frame():
            line["classification"] = self._frame_classes()
            detections, names = detections[np.zeros(0, np.int64)], []
        line["detections"] = detections_to_dicts(
            detections, names, class_names=self.model.class_names, embeddings=embeddings
        )
        return {**line, "model": self.model_block(), **self.extra}

    def _classifies_the_frame(self) -> bool:
        """A frame-level classification: one box, the whole frame, from a classification model."""
        if self.model.task != "classification" or len(self.detections) != 1:
            return False
        return bool(np.allclose(self.detections.xyxy[0], (0, 0, self.frame.width, self.frame.height)))

    def _frame_classes(self) -> list[dict[str, Any]]:
        """The classified frame's top-k (its top-1 alone when the model gave no class scores)."""
        detections = self.detections
        if detections.class_scores is not None:
            return top_classes(detections.class_scores, self.model.class_names)[0]
        score = round(float(detections.confidence[0]), 4)
        return [{"class_id": int(detections.class_id[0]), "class_name": self.class_names()[0], "score": score}]

    def model_block(self) -> dict[str, Any]:
        """The line's `model`: provenance, the task, and a pose model's keypoint names and skeleton."""
        info = self.model
        block: dict[str, Any] = {**info.provenance(), "task": info.task}
        if info.keypoint_names:
            block["keypoint_names"] = list(info.keypoint_names)
        if info.skeleton:
            block["skeleton"] = [list(edge) for edge in info.skeleton]
        return block


@dataclass
class Event(_OfAFrame):
    """Something a stage noticed in one frame: a zone entered, a line crossed, a class appeared.

    `kind` names it ("zone_enter", "zone_leave", "line_cross", "class_appeared", "class_disappeared",
    or a user stage's own); `details` hold the rest (zone or line, class_name, tracker_id, counts...).
    """

    kind: str
    frame: Frame
    model: ModelInfo
    details: dict[str, Any] = field(default_factory=dict)

    def identity(self) -> str:
        """The frame's identity, then the kind and details (counts left out: they only describe)."""
        detail = "\0".join(f"{key}={value!r}" for key, value in sorted(self.details.items()) if key != "counts")
        return f"{super().identity()}\0{self.kind}\0{detail}"

    def to_dict(self, embeddings: bool = False) -> dict[str, Any]:
        """The JSON-ready form: `event` names the kind (frame lines have no such key). An event holds
        no embeddings: `embeddings` is taken so that every item a sink writes serialises alike."""
        return {
            "schema": RESULTS_SCHEMA,
            "event": self.kind,
            "source": self.frame.source_id,
            "frame_index": self.frame.index,
            "pts": self.frame.pts,
            "wall_time": self.frame.wall_time,
            **self.details,
            "model": self.model.provenance(),
        }


@dataclass(frozen=True)
class Shape:
    """A named zone (closed polygon) or line in source pixels, for sinks that draw the scene."""

    name: str
    points: np.ndarray  # (N, 2) int
    closed: bool


def class_labels(names: Sequence[str], class_ids: np.ndarray) -> list[str]:
    """Each class id's name (the id itself, as text, when the model names no such class)."""
    return [names[i] if 0 <= i < len(names) else str(i) for i in class_ids]


RESULTS_SCHEMA = 2  # the JSON lines' layout, docs/results.md (lines without "schema" are version 1)
TOP_K = 5  # class scores written per box (and per classified frame), best first


def detections_to_dicts(
    detections: Detections, names: list[str], *, class_names: Sequence[str] = (), embeddings: bool = False
) -> list[dict[str, Any]]:
    """One JSON-ready dict per box (docs/results.md), optional keys only for the fields that are set:
    `names` is each box's class name, `class_names` the model's (naming the top-k class scores)."""
    columns: dict[str, list[Any]] = {
        "xyxy": _rounded(detections.xyxy, 2),
        "confidence": _rounded(detections.confidence, 4),
        "class_id": detections.class_id.tolist(),
        "class_name": list(names),
    }
    if detections.tracker_id is not None:
        columns["tracker_id"] = detections.tracker_id.tolist()
    if detections.keypoints is not None:
        columns["keypoints"] = _keypoint_rows(detections.keypoints, detections.keypoint_confidence)
    if (corners := detections.data.get("xyxyxyxy")) is not None:
        columns["xyxyxyxy"] = _rounded(corners, 2)
    if detections.mask is not None:
        columns["mask"] = detections.mask.rle()
    if detections.class_scores is not None:
        columns["class_scores"] = top_classes(detections.class_scores, class_names)
    if detections.text is not None:
        columns["text"] = [str(text) for text in detections.text]
    if detections.text_confidence is not None:
        columns["text_confidence"] = _rounded(detections.text_confidence, 4)
    if embeddings and detections.embeddings is not None:
        columns["embedding"] = _rounded(detections.embeddings, 5)
    if (crop_class := detections.data.get("crop_class")) is not None:  # a classify stage's answer
        columns["crop_class"] = [str(name) for name in crop_class]
        columns["crop_class_id"] = detections.data["crop_class_id"].tolist()
        columns["crop_score"] = _rounded(detections.data["crop_score"], 4)
    return [dict(zip(columns, row)) for row in zip(*columns.values())]


def top_classes(scores: np.ndarray, class_names: Sequence[str], k: int = TOP_K) -> list[list[dict[str, Any]]]:
    """Per row of (N, C) scores, its k best classes `{class_id, class_name, score}`, best first."""
    best = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    values = _rounded(np.take_along_axis(scores, best, axis=1), 4)
    rows = []
    for ids, row in zip(best.tolist(), values):
        names = class_labels(class_names, ids)
        rows.append([{"class_id": c, "class_name": name, "score": v} for c, name, v in zip(ids, names, row)])
    return rows


def _keypoint_rows(keypoints: np.ndarray, confidence: np.ndarray | None) -> list[list[list[float | None]]]:
    """Each box's keypoints as [x, y, conf] (conf null when the model scores no keypoint)."""
    xy = _rounded(keypoints, 2)
    scores = _rounded(confidence, 4) if confidence is not None else [[None] * keypoints.shape[1]] * len(keypoints)
    return [[[x, y, c] for (x, y), c in zip(points, row)] for points, row in zip(xy, scores)]


def _rounded(values: np.ndarray, digits: int) -> list[Any]:
    """Nested lists of floats rounded in float64 (a float32 0.9 is written 0.9, not 0.8999999761581421)."""
    return np.round(values.astype(np.float64), digits).tolist()
