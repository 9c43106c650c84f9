"""What every model family shares: loading from a package, batching into reusable buffers, decoding.

A family subclasses `DetectionModel`, says how its input looks (`input_spec`) and how to read its
raw outputs (`decode`); `load` builds it from a negotiated package whatever the backend.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import threading
import time
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from ...device import DeviceInputBuffers, array_device, to_host
from ...errors import MissingDependencyError
from ...frames import Detections, Frame, ModelInfo
from ..backends.base import Backend
from ..backends.package import open_backend, primary_file
from ..entities import LoadOptions, ModelDocument, ModelPackage
from ..preprocess import InputBuffers, InputSpec, Placement

log = logging.getLogger(__name__)


class DetectionModel:
    """A detector: `detect(frames)` returns one Detections per frame, in source pixel coordinates.

    Subclasses set the defaults below and implement `decode`. `detect` may be called from several
    threads at once; each call borrows its own input buffer. When the backend runs on a GPU
    (its `input_device` is "cuda:N") and CuPy is installed, batches are letterboxed on that GPU
    and handed over in place; families that set `decodes_on_device` then decode there too.
    """

    # Whether `decode` takes device (CuPy) outputs; others get host copies.
    decodes_on_device: ClassVar[bool] = False

    default_confidence: ClassVar[float] = 0.25
    default_iou: ClassVar[float] = 0.45
    default_input_size: ClassVar[tuple[int, int]] = (640, 640)
    # Families whose graphs take any size that is a multiple of this (None: only their own size).
    stride: ClassVar[int | None] = None

    def __init__(
        self,
        backend: Backend,
        info: ModelInfo,
        spec: InputSpec,
        *,
        confidence: float | None = None,
        iou: float | None = None,
        batch_size: int = 4,
        dependencies: Mapping[str, DetectionModel] | None = None,
        fit_to_frames: bool = False,
    ) -> None:
        self.backend = backend
        self.info = info
        self.spec = spec
        self.confidence = self.default_confidence if confidence is None else confidence
        self.iou = self.default_iou if iou is None else iou
        self.batch_size = batch_size
        self.dependencies = dict(dependencies or {})
        self._device = _input_device(backend, info.model_id)
        self.buffers = self._new_buffers(spec)
        # With a graph of dynamic height and width, each batch is letterboxed into the smallest
        # stride-aligned size within `spec` that its frames need (320 x 192 for 16:9 at 320) instead
        # of the full square: fewer pixels through the network, the same boxes.
        self.fit_to_frames = fit_to_frames and self.stride is not None
        self._fitted: dict[tuple[int, int], InputBuffers | DeviceInputBuffers] = {spec.width_height: self.buffers}
        self._fitted_lock = threading.Lock()

    @classmethod
    def load(
        cls,
        document: ModelDocument,
        package: ModelPackage,
        files: Mapping[str, Path],
        options: LoadOptions,
        dependencies: Mapping[str, DetectionModel] | None = None,
    ) -> DetectionModel:
        """Build the family's model from a fetched package (runs in a worker thread)."""
        backend = open_backend(package, files, options, prepare_onnx=cls.prepare_onnx)
        class_names, input_size = cls.describe(document, backend, options)
        info = ModelInfo(
            model_id=document.model_id,
            architecture=document.architecture,
            task=document.task,
            backend=backend.name,
            package=package.package_id,
            sha256=_sha256_of(package, primary_file(package, files)),
            class_names=class_names,
            input_size=input_size,
        )
        spec = cls.input_spec(document, input_size, backend.input_dtype)
        return cls(
            backend,
            info,
            spec,
            confidence=options.confidence,
            iou=options.iou,
            batch_size=options.batch_bounds[1],
            dependencies=dependencies,
            fit_to_frames=_fits_to_frames(options) and static_input_size(backend) is None,
        )

    @classmethod
    def prepare_onnx(cls, model: bytes, cache_root: str | None = None) -> bytes:
        """A chance to rewrite an ONNX graph before ONNX Runtime loads it (default: as is); a
        rewrite may keep its result under `cache_root` (the model cache's, None: the default)."""
        return model

    @classmethod
    def describe(
        cls, document: ModelDocument, backend: Backend, options: LoadOptions
    ) -> tuple[tuple[str, ...], tuple[int, int]]:
        """Class names and input size (width, height): options, then the document, then the file."""
        size = options.input_size or document.input_size or static_input_size(backend) or cls.default_input_size
        return tuple(document.class_names), (int(size[0]), int(size[1]))

    @classmethod
    def input_spec(cls, document: ModelDocument, input_size: tuple[int, int], dtype: np.dtype) -> InputSpec:
        return InputSpec(input_size[0], input_size[1], dtype)

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
        # Everything on the device runs in its context (cuda:N): the letterbox, a backend's padding of
        # a fixed batch, and a family's decode on the device (decode_yolo_batch), or CuPy puts it on GPU 0.
        with self._activate():
            buffers = self._buffers_for(frames)
            buffer = buffers.acquire()
            try:
                # fill hands the batch to this thread's current stream, the backend reads it after
                # that stream's work and hands its reads back to it (streamer/device/streams.py)...
                inputs, placements = buffer.fill(frames)
                outputs = self.backend.run(inputs)
            finally:
                # ...so the buffer is released once this thread's current stream passed an event
                # recorded now, after the last read, and not when the work was merely queued.
                buffers.release(buffer)
            if not self.decodes_on_device:
                outputs = [to_host(output) for output in outputs]
            return self.decode(outputs, placements, frames)

    def _activate(self) -> Any:
        """The model's CUDA device as the current one (a no-op when it letterboxes on the CPU)."""
        return contextlib.nullcontext() if self._device is None else self._device.activate()

    def _new_buffers(self, spec: InputSpec) -> InputBuffers | DeviceInputBuffers:
        if self._device is None:
            return InputBuffers(spec, self.batch_size)
        return DeviceInputBuffers(spec, self.batch_size, self._device)

    def _buffers_for(self, frames: list[Frame]) -> InputBuffers | DeviceInputBuffers:
        """The buffers of the input size this batch needs (always `spec`'s unless fitting to frames)."""
        if not self.fit_to_frames:
            return self.buffers
        assert self.stride is not None
        sizes = [fitted_size(frame.width, frame.height, self.spec, self.stride) for frame in frames]
        size = (max(width for width, _ in sizes), max(height for _, height in sizes))
        with self._fitted_lock:
            if size not in self._fitted:
                spec = dataclasses.replace(self.spec, width=size[0], height=size[1])
                self._fitted[size] = self._new_buffers(spec)
            return self._fitted[size]

    def decode(self, outputs: list[np.ndarray], placements: list[Placement], frames: list[Frame]) -> list[Detections]:
        raise NotImplementedError


def _fits_to_frames(options: LoadOptions) -> bool:
    """As asked, else only when no input size was given (an explicit size is taken as the size)."""
    return options.input_size is None if options.fit_to_frames is None else options.fit_to_frames


def _input_device(backend: Backend, what: str) -> Any:
    """The ArrayDevice to letterbox on when the backend runs on a GPU and CuPy can reach it, else None."""
    device = backend.input_device
    if device == "cpu":
        return None
    try:
        return array_device(device, what)
    except MissingDependencyError as exc:
        log.warning("%s: letterboxing on the CPU and copying to %s, since %s", what, device, exc)
        return None


def _as_frame(item: Frame | np.ndarray) -> Frame:
    if isinstance(item, Frame):
        return item
    if item.ndim != 3 or item.shape[2] != 3 or item.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image of shape (H, W, 3), got {item.dtype} {item.shape}")
    return Frame("image", 0, None, time.time(), image=item)


def fitted_size(width: int, height: int, spec: InputSpec, stride: int) -> tuple[int, int]:
    """The smallest input (width, height), multiples of `stride` within `spec`, that holds the
    frame letterboxed at the gain the full `spec` would give it."""
    gain = min(spec.width / width, spec.height / height)
    fitted_width = min(spec.width, -(-round(width * gain) // stride) * stride)
    fitted_height = min(spec.height, -(-round(height * gain) // stride) * stride)
    return fitted_width, fitted_height


def static_input_size(backend: Backend) -> tuple[int, int] | None:
    """(width, height) when the model's input fixes them."""
    height, width = (list(backend.input_shape) + [None, None, None, None])[2:4]
    return (width, height) if isinstance(width, int) and isinstance(height, int) else None


def _sha256_of(package: ModelPackage, path: Path) -> str:
    declared = next((f.sha256 for f in package.files if f.name == path.name and f.sha256), None)
    if declared:
        return declared
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def clip_boxes(xyxy: np.ndarray, frame: Frame) -> np.ndarray:
    np.clip(xyxy[:, 0::2], 0, frame.width, out=xyxy[:, 0::2])
    np.clip(xyxy[:, 1::2], 0, frame.height, out=xyxy[:, 1::2])
    return xyxy


def nms(xyxy: np.ndarray, scores: np.ndarray, iou_threshold: float, max_keep: int = 300) -> np.ndarray:
    """Greedy non-maximum suppression; returns kept indices, best first."""
    order = np.argsort(-scores, kind="stable")  # equal scores in index order, as batched_nms does
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
