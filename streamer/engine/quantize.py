"""INT8 packages: ONNX Runtime static quantization (QDQ), calibrated on a clip, checked against fp32.

    quantize_model("nudenet-320n", "clip.mp4", options)   what `streamer models quantize --int8` does

1. resolve the model and fetch its fp32 ONNX package; load it as AutoModel would, on the CPU;
2. decode calibration frames from the clip with PyAV and run the fp32 model on them one at a time,
   keeping each input batch its backend is handed: the calibration tensors are preprocessed by the
   model family itself (letterbox, fitted size, scale), and the fp32 boxes come with them;
3. quantize the graph as the family runs it (`prepare_onnx`): QDQ, int8 weights per output channel,
   uint8 activations, ranges from histograms of the calibration tensors (the 99.999th percentile:
   MinMax lets rare outliers coarsen every step). The decoding tail, every node between the last
   convolutions and the outputs, stays float: YOLO's concatenates box pixels (0..640) with class
   scores (0..1) into one tensor, and one uint8 scale for both rounds the scores away;
4. write a local model folder (providers/local.py) holding the fp32 package and the int8 one, and
   check the int8 model on the same frames: the share of fp32 boxes an int8 box of the same class
   matches at IoU >= 0.5, the reverse, and ms per frame of each.

Negotiation keeps int8 packages off the CPU unless the load options allow them
(`quantization = ["fp32", "int8"]`); the folder is written where the local provider looks for the
model's id, so the same id then loads the int8 package.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from ..errors import ModelFormatError, ParameterError, SourceOpenError
from ..frames import Detections, Frame
from ..importing import import_optional
from .backends.package import primary_file
from .cache import atomic_write, file_sha256, safe_folder_name
from .entities import FileSpec, LoadOptions, ModelDocument, ModelPackage, make_options
from .models.base import DetectionModel
from .providers.local import MANIFEST, LocalDirectoryProvider

WHAT = "INT8 quantization"
INSTALL_HINT = "pip install onnx"  # onnxruntime.quantization builds the QDQ graph with the `onnx` package
MATCH_IOU = 0.5
QUANTIZED_FILE = "model.int8.onnx"
LAYERS = ("Conv", "ConvTranspose", "MatMul", "Gemm")  # where the decoding tail of a graph begins


@dataclasses.dataclass(frozen=True)
class Agreement:
    """How the int8 boxes compare with the fp32 ones, over the same frames."""

    fp32_boxes: int
    int8_boxes: int
    matched: int  # one-to-one pairs of the same class at IoU >= MATCH_IOU

    @property
    def fp32_matched(self) -> float:
        """The share of fp32 boxes an int8 box matches (1.0 when there are none)."""
        return self.matched / self.fp32_boxes if self.fp32_boxes else 1.0

    @property
    def int8_matched(self) -> float:
        """The share of int8 boxes an fp32 box matches (1.0 when there are none)."""
        return self.matched / self.int8_boxes if self.int8_boxes else 1.0

    @property
    def score(self) -> float:
        """Both shares in one number: matched pairs over the mean box count (the F1 of int8 against fp32)."""
        total = self.fp32_boxes + self.int8_boxes
        return 2 * self.matched / total if total else 1.0


@dataclasses.dataclass(frozen=True)
class QuantizeReport:
    """What `quantize_model` made and how it compares with fp32 on the calibration frames."""

    folder: Path
    model_id: str
    package_id: str
    frames: int
    agreement: Agreement
    fp32_ms: float  # per frame, batch 1, the whole detect call
    int8_ms: float

    @property
    def speedup(self) -> float:
        return self.fp32_ms / self.int8_ms if self.int8_ms else 0.0

    def __str__(self) -> str:
        a = self.agreement
        return "\n".join(
            [
                f"{self.model_id}: int8 package {self.package_id} ready in {self.folder}",
                f"  calibrated on {self.frames} frames; checked against fp32 on them:",
                f"  fp32 boxes matched by int8: {a.fp32_matched:.3f} ({a.matched}/{a.fp32_boxes})",
                f"  int8 boxes matched by fp32: {a.int8_matched:.3f} ({a.matched}/{a.int8_boxes})",
                f"  ms/frame: fp32 {self.fp32_ms:.1f}, int8 {self.int8_ms:.1f} ({self.speedup:.2f}x)",
                '  load it with quantization = ["fp32", "int8"] (on CPU, int8 is used only when allowed)',
            ]
        )


# --- the entry point ---------------------------------------------------------------------------


async def quantize_model(
    model_id_or_path: str,
    clip: str | Path,
    options: LoadOptions | None = None,
    *,
    out_dir: str | Path | None = None,
    frames: int = 16,
) -> QuantizeReport:
    """Write an int8 local package of `model_id_or_path` calibrated on `frames` frames of `clip`."""
    import anyio.to_thread

    from .download import fetch
    from .resolve import resolve

    options = cpu_options(options)
    document = await resolve(model_id_or_path, options)
    package = fp32_onnx_package(document)
    files = await fetch(document, package, options)
    source = primary_file(package, files)
    folder = Path(out_dir) if out_dir is not None else default_folder(document)
    work = functools.partial(quantize_package, document, package, source, Path(clip), folder, options, frames)
    return await anyio.to_thread.run_sync(work)


def quantize_package(
    document: ModelDocument,
    package: ModelPackage,
    source: Path,
    clip: Path,
    folder: Path,
    options: LoadOptions,
    count: int = 16,
) -> QuantizeReport:
    """The blocking work of `quantize_model`, for a fetched fp32 ONNX package whose file is `source`."""
    pictures = calibration_frames(clip, count)
    fp32_model = _load(document, package, {source.name: source}, options)
    fp32_backend = fp32_model.backend
    recorder = fp32_model.backend = RecordingBackend(fp32_backend)
    fp32_found = fp32_model.detect(pictures)
    fp32_model.backend = fp32_backend  # timed without the recording
    _, fp32_ms = timed_detect(fp32_model, pictures)
    building = Path(tempfile.mkdtemp(prefix=".quantize-", dir=_created(folder)))
    try:
        int8_file = building / f"{package.package_id}-int8" / QUANTIZED_FILE
        quantize_onnx(fp32_model.prepare_onnx(source.read_bytes(), options.cache_dir), recorder.batches, int8_file)
        int8_package = quantized_package(package, int8_file, clip, len(pictures))
        int8_model = _load(document, int8_package, {QUANTIZED_FILE: int8_file}, options)
        int8_found, int8_ms = timed_detect(int8_model, pictures)
        agreement = agreement_of(fp32_found, int8_found)
        int8_package.extra["agreement"] = _agreement_facts(agreement, fp32_ms, int8_ms)
        _write_folder(building, document, package, source, int8_package, folder)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    model_id = msgspec.json.decode((folder / MANIFEST).read_bytes(), type=ModelDocument).model_id
    return QuantizeReport(folder, model_id, int8_package.package_id, len(pictures), agreement, fp32_ms, int8_ms)


# --- what is quantized, and where it goes ------------------------------------------------------


def cpu_options(options: LoadOptions | None) -> LoadOptions:
    """The load options for calibrating and checking: ONNX Runtime on the CPU, one frame at a time."""
    return make_options(options, {"device": "cpu", "backend": "onnxruntime", "batch_size": 1, "quantization": None})


def fp32_onnx_package(document: ModelDocument) -> ModelPackage:
    """The package to quantize: the model's fp32 ONNX package."""
    found = [p for p in document.packages if p.format == "onnx" and p.quantization == "fp32"]
    if not found:
        kinds = ", ".join(f"{p.format} {p.quantization}" for p in document.packages) or "none"
        raise ParameterError(f"model {document.model_id!r} has no fp32 ONNX package to quantize (packages: {kinds})")
    return found[0]


def default_folder(document: ModelDocument) -> Path:
    """Where the local provider looks for the model's id (a file's stem for a model given by path)."""
    return LocalDirectoryProvider().root / _local_id(document)


def _local_id(document: ModelDocument) -> str:
    model_id = document.model_id
    return safe_folder_name(Path(model_id).stem if Path(model_id).suffix.lower() == ".onnx" else model_id)


def quantized_package(fp32: ModelPackage, file: Path, clip: Path, frames: int) -> ModelPackage:
    """The int8 package of `file`: the fp32 package's batch profile and requirements, CPU only."""
    return ModelPackage(
        package_id=f"{fp32.package_id}-int8",
        backend="onnxruntime",
        format="onnx",
        quantization="int8",
        batch=fp32.batch,
        requirements=msgspec.structs.replace(fp32.requirements, device="cpu"),
        files=[FileSpec(name=file.name, size=file.stat().st_size, sha256=file_sha256(file))],
        extra={"quantized_from": fp32.package_id, "calibration": {"clip": clip.name, "frames": frames}},
    )


def _write_folder(
    building: Path, document: ModelDocument, fp32: ModelPackage, source: Path, int8: ModelPackage, folder: Path
) -> None:
    """`folder` as a local model folder of both packages: files first, the manifest last."""
    fp32_copy = building / fp32.package_id / source.name
    fp32_copy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, fp32_copy)
    fp32_local = msgspec.structs.replace(
        fp32, files=[FileSpec(name=source.name, size=fp32_copy.stat().st_size, sha256=file_sha256(fp32_copy))]
    )
    manifest = msgspec.structs.replace(document, model_id=_local_id(document), packages=[fp32_local, int8])
    for package in (fp32_local, int8):
        target = folder / package.package_id
        shutil.rmtree(target, ignore_errors=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(building / package.package_id), str(target))
    atomic_write(folder / MANIFEST, msgspec.json.format(msgspec.json.encode(manifest), indent=2))


def _created(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# --- calibration -------------------------------------------------------------------------------


def calibration_frames(clip: Path, count: int) -> list[Frame]:
    """Up to `count` frames spread over the clip, decoded with PyAV."""
    import av

    if count < 1:
        raise ParameterError(f"calibration frames: {count} is not a positive count")
    try:
        with av.open(str(clip)) as container:
            stream = container.streams.video[0]
            step = max(1, (stream.frames or 0) // count)
            decoded = (picture for index, picture in enumerate(container.decode(stream)) if index % step == 0)
            frames = [Frame("calibration", i, None, 0.0, decoded=picture) for i, picture in zip(range(count), decoded)]
    except (av.error.FFmpegError, IndexError) as exc:
        raise SourceOpenError(f"calibration clip {str(clip)!r}: cannot decode a video stream: {exc}") from exc
    if not frames:
        raise SourceOpenError(f"calibration clip {str(clip)!r} has no frames")
    return frames


class RecordingBackend:
    """A backend that runs another and keeps a copy of every input batch it was handed."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.input_dtype = inner.input_dtype
        self.input_shape = inner.input_shape
        self.fixed_batch = inner.fixed_batch
        self.metadata = inner.metadata
        self.batches: list[np.ndarray] = []

    @property
    def input_device(self) -> str:
        return str(self.inner.input_device)

    def run(self, batch: Any) -> list[Any]:
        self.batches.append(np.array(batch, copy=True))
        return list(self.inner.run(batch))


def quantize_onnx(model: bytes, batches: Sequence[np.ndarray], target: Path) -> None:
    """Static QDQ quantization of `model`, its activation ranges taken over `batches` (its one input)."""
    onnx = import_optional("onnx", extra="", what=WHAT, install=INSTALL_HINT)
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    target.parent.mkdir(parents=True, exist_ok=True)
    source, prepared = target.with_suffix(".fp32.onnx"), target.with_suffix(".pre.onnx")
    source.write_bytes(model)
    try:
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        graph = onnx.load(str(prepared)).graph
        with contextlib.redirect_stdout(sys.stderr):  # its calibrator prints progress; stdout is for the report
            quantize_static(
                str(prepared),
                str(target),
                _Batches(_input_name(graph), batches),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.Percentile,
                nodes_to_exclude=decoding_tail(graph),
            )
    except Exception as exc:  # onnx and onnxruntime.quantization raise anything from deep inside the graph
        raise ModelFormatError(f"{WHAT} failed: {type(exc).__name__}: {exc}") from exc
    finally:
        source.unlink(missing_ok=True)
        prepared.unlink(missing_ok=True)


def decoding_tail(graph: Any) -> list[str]:
    """The names of the nodes on the way from the graph's outputs back to its last convolutions."""
    producers = {output: node for node in graph.node for output in node.output}
    seen: set[str] = set()  # by first output: node names may be empty
    tail: list[str] = []
    waiting = [output.name for output in graph.output]
    while waiting:
        node = producers.get(waiting.pop())
        if node is None or node.output[0] in seen or node.op_type in LAYERS:
            continue
        seen.add(node.output[0])
        tail += [node.name] if node.name else []
        waiting += list(node.input)
    return tail


def _input_name(graph: Any) -> str:
    weights = {initializer.name for initializer in graph.initializer}
    return next(value.name for value in graph.input if value.name not in weights)


class _Batches:
    """The recorded inputs as ONNX Runtime's CalibrationDataReader wants them: one feed at a time."""

    def __init__(self, input_name: str, batches: Sequence[np.ndarray]) -> None:
        self._feeds = iter([{input_name: batch} for batch in batches])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


# --- the check ---------------------------------------------------------------------------------


def timed_detect(model: DetectionModel, frames: Sequence[Frame]) -> tuple[list[Detections], float]:
    """Each frame's detections, one frame per call, and the mean ms per frame after a warm-up call."""
    model.detect(list(frames[:1]))
    found: list[Detections] = []
    start = time.perf_counter()
    for frame in frames:
        found += model.detect([frame])
    return found, (time.perf_counter() - start) * 1000 / len(frames)


def agreement_of(fp32: Sequence[Detections], int8: Sequence[Detections]) -> Agreement:
    """The boxes of each frame matched one-to-one, same class, IoU >= MATCH_IOU, best overlaps first."""
    matched = sum(matched_pairs(a, b) for a, b in zip(fp32, int8, strict=True))
    return Agreement(sum(map(len, fp32)), sum(map(len, int8)), matched)


def matched_pairs(a: Detections, b: Detections, threshold: float = MATCH_IOU) -> int:
    if not len(a) or not len(b):
        return 0
    iou = pairwise_iou(a.xyxy, b.xyxy)
    iou[np.asarray(a.class_id)[:, None] != np.asarray(b.class_id)[None, :]] = 0.0
    used_a: set[int] = set()
    used_b: set[int] = set()
    candidates = sorted(zip(*np.nonzero(iou >= threshold)), key=lambda pair: -iou[pair])
    for i, j in candidates:
        if i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
    return len(used_a)


def pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) IoU of xyxy boxes."""
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    overlap = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return overlap / (area_a[:, None] + area_b[None, :] - overlap + 1e-9)


def _agreement_facts(agreement: Agreement, fp32_ms: float, int8_ms: float) -> dict[str, float | int]:
    return {
        "fp32_boxes": agreement.fp32_boxes,
        "int8_boxes": agreement.int8_boxes,
        "fp32_matched": round(agreement.fp32_matched, 4),
        "int8_matched": round(agreement.int8_matched, 4),
        "fp32_ms": round(fp32_ms, 2),
        "int8_ms": round(int8_ms, 2),
    }


def _load(
    document: ModelDocument, package: ModelPackage, files: dict[str, Path], options: LoadOptions
) -> DetectionModel:
    """The package loaded by its family, as `loading.instantiate` does (here, already in a worker thread)."""
    from .models import model_class

    family = model_class(document.architecture, document.task, package.backend, f"model {document.model_id!r}")
    return family.load(document, package, files, options, {})
