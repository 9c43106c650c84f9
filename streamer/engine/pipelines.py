"""AutoModelPipeline: several models that work as one, from a registry of named pipelines.

    pipeline = AutoModelPipeline.from_pretrained("faces-with-landmarks")
    pipeline = AutoModelPipeline.from_pretrained(
        "faces-with-landmarks", models_parameters=[None, {"model_id_or_path": "centerface", "threads": 2}]
    )
    detections = pipeline(image)
    lines = AutoModelPipeline.from_pretrained("ocr")(image)  # lines.text, lines.data["xyxyxyxy"]
    plates = AutoModelPipeline.from_pretrained("ocr", ["plates.onnx"])(image)  # the text in each plate box

A pipeline answers `detect(frames)` like a single model, so it can stand wherever a model does.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
from dataclasses import dataclass
from typing import Any, Sequence

import anyio
import numpy as np

from ..errors import ParameterError
from ..frames import Detections, Frame, ModelInfo
from .auto_model import load_model
from .entities import make_options
from .models.base import DetectionModel, _as_frame
from .models.ocr import line_image


@dataclass(frozen=True)
class PipelineSpec:
    target: str  # "module:Class"
    roles: tuple[str, ...]  # the models it takes, in order
    default_models: tuple[str, ...]
    description: str


PIPELINES: dict[str, PipelineSpec] = {
    "faces-with-landmarks": PipelineSpec(
        target="streamer.engine.pipelines:FacesWithLandmarks",
        roles=("detector", "face_model"),
        default_models=("nudenet-320n", "centerface"),
        description="a general detector finds faces; CenterFace refines each crop and adds five landmarks",
    ),
    "ocr": PipelineSpec(
        target="streamer.engine.pipelines:ReadText",
        roles=("detector", "recognizer"),
        default_models=("ppocr-det", "ppocr-rec"),
        description="PP-OCR: lines of text found, each read (text, and its corners in data['xyxyxyxy']); "
        "name another detector first (a plate detector) to read the text in its boxes",
    ),
}


class AutoModelPipeline:
    @staticmethod
    async def load(
        name: str, models_parameters: Sequence[str | dict[str, Any] | None] = (), **shared: Any
    ) -> ModelPipeline:
        """Load every model of pipeline `name`; `shared` options apply to each, its own params win."""
        spec = _spec(name)
        if len(models_parameters) > len(spec.roles):
            raise ParameterError(f"pipeline {name!r} takes {len(spec.roles)} models ({', '.join(spec.roles)})")
        models = {}
        for index, role in enumerate(spec.roles):
            given = models_parameters[index] if index < len(models_parameters) else None
            model_id, params = _model_parameters(given, spec.default_models[index])
            models[role] = await load_model(model_id, make_options(None, {**shared, **params}))
        module, _, attribute = spec.target.partition(":")
        return getattr(importlib.import_module(module), attribute)(name, models)

    @staticmethod
    def from_pretrained(
        name: str, models_parameters: Sequence[str | dict[str, Any] | None] = (), **shared: Any
    ) -> ModelPipeline:
        return anyio.run(functools.partial(AutoModelPipeline.load, name, models_parameters, **shared))


def _spec(name: str) -> PipelineSpec:
    try:
        return PIPELINES[name]
    except KeyError:
        raise ParameterError(f"unknown pipeline {name!r} (known: {', '.join(sorted(PIPELINES))})") from None


def _model_parameters(given: str | dict[str, Any] | None, default: str) -> tuple[str, dict[str, Any]]:
    if given is None:
        return default, {}
    if isinstance(given, str):
        return given, {}
    params = dict(given)
    return params.pop("model_id_or_path", default), params


class ModelPipeline:
    """Base: named models, one `detect` over frames, provenance naming every model."""

    def __init__(self, name: str, models: dict[str, DetectionModel]) -> None:
        self.name = name
        self.models = models
        first = next(iter(models.values())).info
        self.info = ModelInfo(
            model_id=name,
            architecture="pipeline",
            task=first.task,
            backend="+".join(model.info.backend for model in models.values()),
            package="+".join(f"{model.info.model_id}:{model.info.package}" for model in models.values()),
            sha256="+".join(model.info.sha256[:12] for model in models.values()),
            class_names=self.class_names(),
            input_size=first.input_size,
        )

    def class_names(self) -> tuple[str, ...]:
        return next(iter(self.models.values())).info.class_names

    def detect(self, frames: Sequence[Frame | np.ndarray]) -> list[Detections]:
        raise NotImplementedError

    def __call__(self, image: Frame | np.ndarray) -> Detections:
        return self.detect([image])[0]


class FacesWithLandmarks(ModelPipeline):
    """Faces from a general detector (classes whose name contains FACE), each refined by a face model."""

    margin = 0.3  # crops grow by this share of the box on each side, so the whole face is in view

    def class_names(self) -> tuple[str, ...]:
        return ("face",)

    def detect(self, frames: Sequence[Frame | np.ndarray]) -> list[Detections]:
        frames = [_as_frame(item) for item in frames]
        found = self.models["detector"].detect(frames)
        return [self._refine(frame, boxes) for frame, boxes in zip(frames, found)]

    def _refine(self, frame: Frame, found: Detections) -> Detections:
        names = self.models["detector"].info.class_names
        faces = found[np.array(["FACE" in names[i].upper() for i in found.class_id], dtype=bool)]
        refined = [self._refine_one(frame, box) for box in faces.xyxy]
        kept = [face for face in refined if face is not None]
        if not kept:
            return Detections.empty()
        return Detections(
            xyxy=np.concatenate([face.xyxy for face in kept]),
            confidence=np.concatenate([face.confidence for face in kept]),
            class_id=np.zeros(len(kept), np.int64),
            keypoints=np.concatenate([face.keypoints for face in kept]),
        )

    def _refine_one(self, frame: Frame, box: np.ndarray) -> Detections | None:
        x1, y1, x2, y2 = _grow(box, self.margin, frame.width, frame.height)
        crop = np.ascontiguousarray(frame.image[y1:y2, x1:x2])
        faces = self.models["face_model"](crop)
        if not len(faces):
            return None
        best = faces[np.array([int(faces.confidence.argmax())])]
        best.xyxy += np.array([x1, y1, x1, y1], np.float32)
        best.keypoints += np.array([x1, y1], np.float32)
        return best


class ReadText(ModelPipeline):
    """Text read in each region a detector finds: the detector's boxes, each with `text` and
    `text_confidence` from the recogniser.

    A region with corners (`data["xyxyxyxy"]`, as PP-OCR's text detector gives) is sampled straight
    from them, so slanted lines read level; any other box is cropped to its bounds. A text
    detector's lines that read as nothing sure (text confidence under `min_line_confidence`, as
    PaddleOCR's `drop_score`) are dropped; another detector's boxes are all kept, read or not.
    """

    min_line_confidence = 0.5

    def detect(self, frames: Sequence[Frame | np.ndarray]) -> list[Detections]:
        frames = [_as_frame(item) for item in frames]
        read = read_text(self.models["recognizer"], frames, self.models["detector"].detect(frames))
        if self.models["detector"].info.task != "text-detection":
            return read
        return [lines[lines.text_confidence >= self.min_line_confidence] for lines in read]


def read_text(recognizer: Any, frames: Sequence[Frame], found: Sequence[Detections]) -> list[Detections]:
    """`found` (each frame's boxes) with `text` and `text_confidence` as `recognizer` (a
    `TextRecognizer`) reads each box's crop; every crop of every frame is read in one call."""
    crops = [line_image(frame.image, corners) for frame, boxes in zip(frames, found) for corners in _regions(boxes)]
    read = iter(recognizer.read(crops))
    return [_with_text(boxes, [next(read) for _ in range(len(boxes))]) for boxes in found]


def _with_text(boxes: Detections, read: list[tuple[str, float]]) -> Detections:
    text = np.array([line for line, _ in read], dtype=object)
    confidence = np.array([score for _, score in read], np.float32)
    return dataclasses.replace(boxes, text=text, text_confidence=confidence)


def _regions(found: Detections) -> np.ndarray:
    """Each box as four corners (N, 4, 2): its own when it has them, else its axis-aligned bounds."""
    corners = found.data.get("xyxyxyxy")
    if corners is not None:
        return corners
    return found.xyxy[:, [[0, 1], [2, 1], [2, 3], [0, 3]]]


def _grow(box: np.ndarray, margin: float, width: int, height: int) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = box
    dx, dy = (x2 - x1) * margin, (y2 - y1) * margin
    return (
        max(0, int(x1 - dx)),
        max(0, int(y1 - dy)),
        min(width, int(np.ceil(x2 + dx))),
        min(height, int(np.ceil(y2 + dy))),
    )
