"""PyTorch backend: TorchScript archives and `torch.export` programs, on the CPU or a CUDA GPU.

streamer never unpickles Python objects from a model file. It loads only TorchScript archives
(`torch.jit.load`: code the TorchScript interpreter runs, no pickled Python callables), exported
programs (`torch.export.load`: a serialized graph and its tensors), and state dicts through
`torch.load(weights_only=True)`, which refuses anything but tensors and plain containers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ...device.arrays import is_host_array
from ...device.streams import current_stream
from ...errors import MissingDependencyError, ModelError, ModelFormatError, ModelNotFoundError, ParameterError
from ...importing import import_optional
from . import parse_device, run_in_fixed_batches

TorchFormat = Literal["torchscript", "torch-export"]
DEFAULT_INPUT_SHAPE: list[int | str] = ["batch", 3, "height", "width"]
METADATA_FILE = "metadata.json"


def import_torch() -> Any:
    return import_optional("torch", extra="torch", what="the PyTorch backend")


class TorchBackend:
    """One module in inference mode.

    `run` takes a NumPy batch and returns NumPy outputs, or a device (CuPy) batch, which torch reads
    in place through DLPack, and returns device outputs the same way. With `half`, the module and
    its input run in float16; floating outputs come back as float32.

    Streams (streamer/device/streams.py): torch queues the module on its current stream and returns
    at once. `torch.from_dlpack` has CuPy make that stream wait for the caller's current CuPy stream,
    where the batch is ready (rules 2, 3); after the module, an event recorded on torch's stream is
    waited for by the caller's stream, so the input's release and the outputs' readers come after
    torch's last read and write (rule 3); and each device output is `record_stream`ed on the
    caller's stream, so torch's caching allocator does not hand its memory to the next batch while
    CuPy still decodes it (rule 4). Host outputs come back through `.cpu()`, which waits.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        name: str,
        format: TorchFormat,
        device: str = "cpu",
        half: bool = False,
        threads: int = 1,
        input_shape: list[int | str] | None = None,
        fixed_batch: int | None = None,
    ) -> None:
        torch = import_torch()
        self._torch = torch
        self.device = _torch_device(torch, device, name)
        path = _existing_file(path, name)
        if self.device.type == "cpu" and torch.get_num_threads() != threads:
            torch.set_num_threads(threads)  # process-wide: every torch model shares the pool
        module, self.metadata, found_shape = _load_module(torch, path, format, self.device, name)
        self.module = module.half() if half else module
        self.half = half
        self.input_dtype = np.dtype(np.float16 if half else np.float32)
        self._tensor_dtype = torch.float16 if half else torch.float32
        self.input_shape: list[int | str] = list(input_shape or found_shape or DEFAULT_INPUT_SHAPE)
        self.fixed_batch = fixed_batch if fixed_batch is not None else _static_batch(found_shape)

    @property
    def name(self) -> str:
        return f"torch-{self.device.type}"

    @property
    def input_device(self) -> str:
        """Where inputs are best prepared: "cpu", or the GPU the module runs on ("cuda:N")."""
        return "cpu" if self.device.type == "cpu" else f"cuda:{self.device.index or 0}"

    def run(self, batch: Any) -> list[Any]:
        return run_in_fixed_batches(self._run_once, batch, self.fixed_batch)

    def _run_once(self, batch: Any) -> list[Any]:
        torch = self._torch
        if is_host_array(batch):
            # torch.from_numpy shares the batch's memory; a pageable host array is staged before
            # `.to` returns, so the host buffer is free again on return, and `.cpu()` waits.
            tensor = torch.from_numpy(np.ascontiguousarray(batch))
            with torch.inference_mode():
                tensor = tensor.to(self.device, dtype=self._tensor_dtype, non_blocking=True)
                return [_to_numpy(torch, output, self.half) for output in flatten_outputs(self.module(tensor))]
        with torch.cuda.device(self.device):
            caller = _caller_stream(torch, self.device, current_stream(batch))
            reader = torch.cuda.current_stream(self.device)
            tensor = torch.from_dlpack(batch)  # DLPack: `reader` waits for CuPy's current stream
            with torch.inference_mode():
                tensor = tensor.to(self.device, dtype=self._tensor_dtype, non_blocking=True)
                outputs = [_widened(torch, output, self.half) for output in flatten_outputs(self.module(tensor))]
            if caller != reader:
                done = torch.cuda.Event()
                done.record(reader)  # after torch's last read of the batch and last write of an output
                caller.wait_event(done)
                for output in outputs:
                    if isinstance(output, torch.Tensor):
                        output.record_stream(caller)  # freed only once the caller's stream got there
            return [_to_device_array(torch, output) for output in outputs]


def load_state_dict(path: str | Path) -> dict[str, Any]:
    """Tensors saved with `torch.save(module.state_dict())`, loaded without unpickling any code."""
    torch = import_torch()
    path = _existing_file(path, "state dict")
    try:
        loaded = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:  # UnpicklingError for code or garbage, RuntimeError for a broken archive
        raise ModelFormatError(f"{path}: not a plain state dict of tensors: {_refusal_reason(exc)}") from exc
    if not isinstance(loaded, Mapping):
        raise ModelFormatError(f"{path}: holds a {type(loaded).__name__}, not a state dict (a mapping of tensors)")
    return dict(loaded)


def flatten_outputs(outputs: Any) -> list[Any]:
    """A module's outputs as a flat list: a tensor, or tuples, lists and dicts (in order) of them."""
    if isinstance(outputs, Mapping):
        return [item for value in outputs.values() for item in flatten_outputs(value)]
    if isinstance(outputs, (tuple, list)):
        return [item for value in outputs for item in flatten_outputs(value)]
    return [outputs]


def decode_metadata(raw: str | bytes, name: str) -> dict[str, str]:
    """A `metadata.json` extra file as a str -> str dict (non-string values stay JSON text)."""
    if not raw:
        return {}
    try:
        decoded = json.loads(raw)
    except ValueError as exc:
        raise ModelFormatError(f"{name}: {METADATA_FILE} is not valid JSON: {exc}") from exc
    if not isinstance(decoded, dict):
        raise ModelFormatError(f"{name}: {METADATA_FILE} holds a {type(decoded).__name__}, not an object")
    return {str(key): value if isinstance(value, str) else json.dumps(value) for key, value in decoded.items()}


def _torch_device(torch: Any, device: str, name: str) -> Any:
    kind, index = parse_device(device, name)
    if kind == "cpu":
        return torch.device("cpu")
    if torch.version.cuda is None:
        raise MissingDependencyError(
            f"{name}: device {device!r} asked for, but this torch build has no CUDA: "
            "install a CUDA build of torch (see pytorch.org) in place of the CPU one"
        )
    if not torch.cuda.is_available():
        raise ModelError(f"{name}: device {device!r} asked for, but torch sees no CUDA GPU (driver or device missing)")
    if index >= torch.cuda.device_count():
        raise ParameterError(f"{name}: device {device!r} asked for, but torch sees {torch.cuda.device_count()} GPU(s)")
    return torch.device("cuda", index)


def _existing_file(path: str | Path, name: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise ModelNotFoundError(f"{name}: no file at {path}")
    return path


def _load_module(
    torch: Any, path: Path, format: str, device: Any, name: str
) -> tuple[Any, dict[str, str], list[int | str] | None]:
    """The module, its metadata, and the input shape when the file records one."""
    if format == "torchscript":
        return (*_load_torchscript(torch, path, device, name), None)
    if format == "torch-export":
        return _load_exported(torch, path, device, name)
    raise ParameterError(f'{name}: format {format!r} is not "torchscript" or "torch-export"')


def _load_torchscript(torch: Any, path: Path, device: Any, name: str) -> tuple[Any, dict[str, str]]:
    extra_files = {METADATA_FILE: ""}
    try:
        module = torch.jit.load(str(path), map_location=device, _extra_files=extra_files)
    except RuntimeError as exc:
        raise ModelFormatError(f"{name}: not a TorchScript archive: {_first_line(exc)}") from exc
    return module.eval(), decode_metadata(extra_files[METADATA_FILE], name)


def _load_exported(
    torch: Any, path: Path, device: Any, name: str
) -> tuple[Any, dict[str, str], list[int | str] | None]:
    extra_files = {METADATA_FILE: ""}
    try:
        with open(path, "rb") as file:  # a file object: torch.export.load wants a ".pt2" name otherwise
            program = torch.export.load(file, extra_files=extra_files)
    except RuntimeError as exc:
        raise ModelFormatError(f"{name}: not a torch.export program (.pt2): {_first_line(exc)}") from exc
    shape = exported_input_shape(program)
    return _exported_module_on(torch, program, device), decode_metadata(extra_files[METADATA_FILE], name), shape


def _exported_module_on(torch: Any, program: Any, device: Any) -> Any:
    """The program's module with every weight and constant on `device` (wherever it was saved from)."""
    try:
        from torch.export.passes import move_to_device_pass
    except ImportError:  # torch < 2.6: move the parameters and buffers only
        return program.module().to(device)
    return move_to_device_pass(program, device).module()


def exported_input_shape(program: Any) -> list[int | str] | None:
    """The first user input's shape in an exported program: ints, and names for dynamic dims."""
    user_inputs = list(program.graph_signature.user_inputs)
    if not user_inputs:
        return None
    node = next((n for n in program.graph.nodes if n.op == "placeholder" and n.name == user_inputs[0]), None)
    value = node.meta.get("val") if node is not None else None
    if value is None or not hasattr(value, "shape"):
        return None
    dims: list[int | str] = [dim if isinstance(dim, int) else str(dim) for dim in value.shape]
    if dims and isinstance(dims[0], str):
        dims[0] = "batch"
    return dims


def _static_batch(shape: list[int | str] | None) -> int | None:
    return shape[0] if shape and isinstance(shape[0], int) else None


def _to_numpy(torch: Any, output: Any, half: bool) -> np.ndarray:
    if not isinstance(output, torch.Tensor):
        return np.asarray(output)
    if half and output.dtype == torch.float16:
        output = output.float()
    return output.cpu().numpy()


def _widened(torch: Any, output: Any, half: bool) -> Any:
    """A contiguous CUDA tensor, float16 widened to float32; anything else as it is."""
    if not isinstance(output, torch.Tensor):
        return output
    if half and output.dtype == torch.float16:
        output = output.float()
    return output.contiguous()


def _to_device_array(torch: Any, output: Any) -> Any:
    """A CUDA tensor as a CuPy array sharing its memory (DLPack: CuPy's current stream waits for torch's)."""
    from ...device.arrays import import_cupy

    if not isinstance(output, torch.Tensor):
        return np.asarray(output)
    return import_cupy().from_dlpack(output)


def _caller_stream(torch: Any, device: Any, stream: Any) -> Any:
    """The caller's current CuPy stream as a torch stream: the legacy stream (handle 0) is torch's
    default stream, any other is wrapped as an external one."""
    if stream.ptr == 0:
        return torch.cuda.default_stream(device)
    return torch.cuda.ExternalStream(stream.ptr, device=device)


def _refusal_reason(exc: BaseException) -> str:
    unsafe = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
    if unsafe:
        return f"it pickles a Python object ({unsafe.group(1)}), and streamer never unpickles code"
    return "torch.load(weights_only=True) cannot read it (not a torch.save file, or corrupted)"


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
