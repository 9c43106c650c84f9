"""One ONNX file converted: the program traced (TorchScript) or exported (`torch.export`) at an example
input, saved with the ONNX metadata inside, then loaded back the way AutoModel loads it and compared
with ONNX Runtime at two input shapes.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ModelFormatError
from ...importing import import_optional
from ..backends.torch import METADATA_FILE
from ..entities import BatchProfile, ModelDocument
from .importer import WHAT, check_ops, gist, import_onnx2torch
from .program import build_program

EXAMPLE_BATCH = 2  # a batch of 1 would let the exporter specialise the batch dimension to 1


@dataclasses.dataclass(frozen=True)
class Converted:
    """What a conversion learnt of the graph: the ONNX metadata (now inside the file too), the batch profile."""

    metadata: dict[str, str]
    batch: BatchProfile


def convert_file(source: Path, target: Path, *, format: str, document: ModelDocument) -> Converted:
    """Convert one ONNX file to `target`, with its metadata inside, and check it against ONNX Runtime."""
    name = f"model {document.model_id!r}"
    torch = import_optional("torch", extra="torch", what=WHAT)
    onnx2torch = import_onnx2torch()
    model = _prepared_onnx(source, document, name)
    check_ops(model, name)
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    shapes = input_shapes(model, document, metadata, name)
    program = build_program(torch, onnx2torch, model, name)
    example = torch.from_numpy(_random_input(shapes.example, shapes.dtype))
    try:
        _save(torch, program, example, shapes, format, target, json.dumps(metadata))
    except Exception as exc:  # torch's tracing and export errors have no common base class
        raise ModelFormatError(f"{name}: {format} could not capture the converted graph: {gist(exc)}") from exc
    verify(target, format, model.SerializeToString(), shapes, name)
    batch = BatchProfile() if 0 in shapes.dynamic else BatchProfile(dynamic=False, size=shapes.example[0])
    return Converted(metadata, batch)


def _prepared_onnx(source: Path, document: ModelDocument, name: str) -> Any:
    """The ONNX graph as the model's family runs it (CenterFace: its fixed input made dynamic)."""
    import onnx
    from google.protobuf.message import DecodeError

    from ..models import model_class

    family = model_class(document.architecture, document.task, "onnxruntime", name)
    try:
        model = onnx.load_from_string(family.prepare_onnx(source.read_bytes()))
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise ModelFormatError(f"{name}: {source} is not an ONNX model ({exc})") from exc
    if not model.graph.node:
        raise ModelFormatError(f"{name}: {source} is not an ONNX model (no graph)")
    return model


@dataclasses.dataclass(frozen=True)
class InputShapes:
    """The input's shape to convert at (`example`), a second one to check the result at (`probe`), the
    dynamic dimensions, and the input's dtype."""

    example: tuple[int, ...]
    probe: tuple[int, ...]
    dynamic: tuple[int, ...]
    dtype: np.dtype
    input_name: str


def input_shapes(model: Any, document: ModelDocument, metadata: dict[str, str], name: str) -> InputShapes:
    """Example and probe shapes: batch 2 then 3, the model's own size then a smaller, non-square one."""
    from onnx.helper import tensor_dtype_to_np_dtype

    weights = {initializer.name for initializer in model.graph.initializer}
    inputs = [value for value in model.graph.input if value.name not in weights]
    if len(inputs) != 1:
        raise ModelFormatError(f"{name}: has {len(inputs)} inputs; streamer runs models with one image input")
    tensor_type = inputs[0].type.tensor_type
    dims = [dim.dim_value if dim.HasField("dim_value") and dim.dim_value > 0 else None for dim in tensor_type.shape.dim]
    dynamic = tuple(index for index, dim in enumerate(dims) if dim is None)
    width, height = _image_size(document, metadata)
    stride = _stride(document, metadata)
    example = [dim or _example_dim(index, len(dims), width, height) for index, dim in enumerate(dims)]
    probe = list(example)
    if 0 in dynamic:
        probe[0] = EXAMPLE_BATCH + 1
    if len(dims) == 4 and 2 in dynamic:
        probe[2] = max(stride, example[2] * 3 // 5 // stride * stride)  # 320 -> 192
    dtype = np.dtype(tensor_dtype_to_np_dtype(tensor_type.elem_type))
    return InputShapes(tuple(example), tuple(probe), dynamic, dtype, inputs[0].name)


def _example_dim(index: int, rank: int, width: int, height: int) -> int:
    if index == 0:
        return EXAMPLE_BATCH
    if rank == 4 and index in (2, 3):
        return height if index == 2 else width
    return EXAMPLE_BATCH


def _image_size(document: ModelDocument, metadata: dict[str, str]) -> tuple[int, int]:
    """(width, height): the document's, else an Ultralytics export's `imgsz`, else 320 x 320."""
    if document.input_size:
        return document.input_size
    try:
        height, width = json.loads(metadata.get("imgsz", "[320, 320]"))
        return int(width), int(height)
    except (ValueError, TypeError):
        return 320, 320


def _stride(document: ModelDocument, metadata: dict[str, str]) -> int:
    from ..models import model_class

    family = model_class(document.architecture, document.task, "onnxruntime", document.model_id)
    try:
        return int(family.stride or metadata.get("stride") or 32)
    except ValueError:
        return 32


def _random_input(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    return np.random.default_rng(len(shape)).random(shape).astype(dtype)


def _save(
    torch: Any, program: Any, example: Any, shapes: InputShapes, format: str, target: Path, metadata: str
) -> None:
    """Trace or export the program at the example input, and save it with the ONNX metadata inside."""
    extra = {METADATA_FILE: metadata}
    with torch.no_grad():
        if format == "torchscript":
            traced = _trace(torch, program, example)
            torch.jit.save(traced, str(target), _extra_files=extra)
            return
        dims = {index: _export_dim(torch, index) for index in shapes.dynamic}
        exported = torch.export.export(program, (example,), dynamic_shapes=((dims or None),), strict=False)
        exported.example_inputs = None  # else the file carries a full example batch
        torch.export.save(exported, str(target), extra_files=extra)


def _trace(torch: Any, program: Any, example: Any) -> Any:
    import warnings

    with warnings.catch_warnings():  # TorchScript is deprecated, and tracing warns of every Python number it sees
        warnings.simplefilter("ignore")
        return torch.jit.trace(program, (example,), check_trace=False)


def _export_dim(torch: Any, index: int) -> Any:
    return torch.export.Dim("batch", min=1) if index == 0 else torch.export.Dim.AUTO


def verify(target: Path, format: str, onnx_bytes: bytes, shapes: InputShapes, name: str) -> None:
    """Load the file as the torch backend will and compare it with ONNX Runtime at both shapes."""
    import onnxruntime

    from ..backends.torch import TorchBackend, import_torch

    threads = import_torch().get_num_threads()  # as it is: the backend would set it process-wide
    backend = TorchBackend(target, name=name, format=format, threads=threads)  # type: ignore[arg-type]
    session = onnxruntime.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    for shape in dict.fromkeys([shapes.example, shapes.probe]):
        batch = _random_input(shape, shapes.dtype)
        try:
            got = backend.run(batch)
        except Exception as exc:  # a shape the capture baked in fails inside torch
            raise ModelFormatError(
                f"{name}: the converted {format} graph fails at input shape {list(shape)}: {gist(exc)}"
            ) from exc
        _compare(got, session.run(None, {shapes.input_name: batch}), shape, format, name)


def _compare(got: list[np.ndarray], want: list[np.ndarray], shape: tuple[int, ...], format: str, name: str) -> None:
    where = f"{name}: the converted {format} graph differs from ONNX Runtime at input shape {list(shape)}"
    if len(got) != len(want):
        raise ModelFormatError(f"{where}: {len(got)} outputs instead of {len(want)}")
    for index, (mine, theirs) in enumerate(zip(got, want)):
        if mine.shape != theirs.shape:
            raise ModelFormatError(f"{where}: output {index} has shape {list(mine.shape)}, not {list(theirs.shape)}")
        scale = max(1.0, float(np.abs(theirs).max(initial=0.0)))
        difference = float(np.abs(mine.astype(np.float64) - theirs).max(initial=0.0))
        if not difference <= 1e-3 * scale:
            raise ModelFormatError(f"{where}: output {index} is off by up to {difference:.3g}")
