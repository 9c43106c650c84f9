"""TensorRT backend: deserialize a plan, or build one from an ONNX package and cache it.

A plan runs only on the GPU generation (compute capability) and the TensorRT version that built it,
so a built plan is cached under a key holding both, with everything else that shaped it. Device
buffers and the stream come from CuPy (no pycuda). The pure helpers below need neither library.

TensorRT 10 and 11 both build (pyproject pins `tensorrt-cu12>=10,<12`; a 12 is refused until it is
read against): 10 builds a weakly typed network and takes `BuilderFlag.FP16` for an fp16 plan; 11
removed that flag and every network is strongly typed, each tensor keeping the type its ONNX gives
it, so an fp16 plan is built from the ONNX converted to float16 first (inputs and outputs stay
float32). `build_recipe` decides which from the module's own names; `TENSORRT_API` lists every
name this file uses, which the tests check against the installed TensorRT.

Streams (streamer/device/streams.py): the engine runs on the backend's own stream. Before it reads
a device batch, that stream waits for an event recorded on the caller's current stream, where the
batch, its padding or its dtype conversion was written (rules 1, 2); device outputs are copied on
the backend's stream and handed back to the caller's stream before `run` returns (rule 3); host
outputs are waited for.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ...device.arrays import import_cupy, module_of
from ...device.streams import hand_off
from ...errors import ModelError, ModelFormatError, ModelNotFoundError, ParameterError
from ..cache import atomic_write, default_cache_root
from ...importing import import_optional
from . import parse_device, run_in_fixed_batches

if TYPE_CHECKING:
    from ..entities import BatchProfile, LoadOptions, ModelPackage

Shape = tuple[int, ...]
TRT_DTYPES: dict[str, np.dtype] = {
    "FLOAT": np.dtype(np.float32),
    "HALF": np.dtype(np.float16),
    "INT8": np.dtype(np.int8),
    "UINT8": np.dtype(np.uint8),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "BOOL": np.dtype(np.bool_),
}
_SAFE_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
WORKSPACE_BYTES = 1 << 30
# Every TensorRT name this module uses ("Class.member" for members); OPTIONAL ones exist in one major
# version only. tests/engine/test_tensorrt_backend.py checks the list against this file's source and,
# where TensorRT imports, against the installed module.
TENSORRT_API = (
    "Logger", "Logger.WARNING", "Builder", "Builder.create_network", "Builder.create_builder_config",
    "Builder.create_optimization_profile", "Builder.build_serialized_network", "OnnxParser",
    "OnnxParser.parse", "OnnxParser.get_error", "OnnxParser.num_errors", "NetworkDefinitionCreationFlag",
    "NetworkDefinitionCreationFlag.STRONGLY_TYPED", "BuilderFlag", "BuilderFlag.FP16",
    "IBuilderConfig.set_memory_pool_limit", "IBuilderConfig.set_flag", "IBuilderConfig.add_optimization_profile",
    "MemoryPoolType.WORKSPACE", "INetworkDefinition.get_input", "INetworkDefinition.num_inputs",
    "IOptimizationProfile.set_shape", "Runtime", "Runtime.deserialize_cuda_engine",
    "ICudaEngine.create_execution_context", "ICudaEngine.num_io_tensors", "ICudaEngine.get_tensor_name",
    "ICudaEngine.get_tensor_shape", "ICudaEngine.get_tensor_dtype", "ICudaEngine.get_tensor_mode",
    "ICudaEngine.get_tensor_profile_shape", "TensorIOMode.INPUT", "IExecutionContext.set_input_shape",
    "IExecutionContext.get_tensor_shape", "IExecutionContext.set_tensor_address",
    "IExecutionContext.execute_async_v3",
)
TENSORRT_OPTIONAL = ("BuilderFlag.FP16",)  # gone in 11


def import_tensorrt() -> Any:
    return import_optional("tensorrt", extra="tensorrt", what="the TensorRT backend")


# --- pure helpers: testable without TensorRT, CuPy or a GPU ------------------------------------


@dataclass(frozen=True)
class PlanSettings:
    """What shapes a plan built from ONNX besides the ONNX itself, the GPU and TensorRT."""

    fp16: bool = False
    batch_min: int = 1
    batch_max: int = 1
    batch_opt: int | None = None  # None: batch_max

    @property
    def opt(self) -> int:
        return self.batch_max if self.batch_opt is None else self.batch_opt


def trt_dtype_to_numpy(name: str) -> np.dtype:
    """NumPy dtype for a TensorRT DataType name ("FLOAT", "HALF", ...)."""
    try:
        return TRT_DTYPES[name]
    except KeyError:
        raise ModelFormatError(f"TensorRT tensor type {name} has no NumPy equivalent streamer handles") from None


def format_compute_capability(cupy_value: str | int) -> str:
    """CuPy's "86" or "120" as "8.6" or "12.0"."""
    digits = str(cupy_value)
    if not digits.isdigit() or len(digits) < 2:
        raise ParameterError(f'compute capability {cupy_value!r} is not like "86"')
    return f"{digits[:-1]}.{digits[-1]}"


def plan_cache_key(
    onnx_sha256: str,
    compute_capability: str,
    tensorrt_version: str,
    fp16: bool,
    batch_min: int,
    batch_opt: int,
    batch_max: int,
) -> str:
    """A file-name-safe key naming every input that shapes a plan (readable prefix + digest of all)."""
    _check_batch_range(batch_min, batch_opt, batch_max)
    fields = {
        "onnx_sha256": onnx_sha256,
        "compute_capability": compute_capability,
        "tensorrt_version": tensorrt_version,
        "fp16": fp16,
        "batch": [batch_min, batch_opt, batch_max],
    }
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:32]
    readable = f"sm{compute_capability}-trt{tensorrt_version}-{'fp16' if fp16 else 'fp32'}"
    readable = re.sub(r"[^A-Za-z0-9.-]", "_", readable)
    return f"{readable}-b{batch_min}-{batch_opt}-{batch_max}-{digest}"


def plan_cache_path(cache_root: str | Path, key: str) -> Path:
    """Where the plan for `key` lives under `cache_root`."""
    if not _SAFE_KEY.match(key):
        raise ParameterError(f"plan cache key {key!r} is not a safe file name")
    return Path(cache_root) / f"{key}.plan"


def default_plan_cache_root(cache_dir: str | Path | None = None) -> Path:
    """`<cache_dir>/tensorrt-plans`, by default inside the model cache's root."""
    return Path(cache_dir or default_cache_root()) / "tensorrt-plans"


def optimization_profile(
    input_shape: Sequence[int | str | None], batch_min: int, batch_max: int, batch_opt: int | None = None
) -> tuple[Shape, Shape, Shape]:
    """(min, opt, max) shapes: a dynamic batch dim takes the range, static dims are kept, opt = max."""
    opt = batch_max if batch_opt is None else batch_opt
    _check_batch_range(batch_min, opt, batch_max)
    dynamic = [i for i, dim in enumerate(input_shape) if not _is_static(dim)]
    if any(i != 0 for i in dynamic):
        raise ModelFormatError(
            f"input shape {list(input_shape)}: only the batch dimension may be dynamic for a TensorRT plan"
        )
    if not dynamic:
        static = tuple(int(dim) for dim in input_shape)  # type: ignore[arg-type]
        return static, static, static
    rest = tuple(int(dim) for dim in input_shape[1:])  # type: ignore[arg-type]
    return (batch_min, *rest), (opt, *rest), (batch_max, *rest)


def output_shapes_for_batch(reported: Mapping[str, Sequence[int]], batch: int) -> dict[str, Shape]:
    """Output shapes for a batch: a dynamic (-1) leading dim becomes `batch`; any other -1 is refused."""
    shapes: dict[str, Shape] = {}
    for name, shape in reported.items():
        dims = tuple(batch if i == 0 and dim < 0 else int(dim) for i, dim in enumerate(shape))
        if any(dim < 0 for dim in dims):
            raise ModelFormatError(f"output {name!r} has a data-dependent shape {tuple(shape)}: not supported")
        shapes[name] = dims
    return shapes


def plan_batch_range(profile: BatchProfile, batch_bounds: tuple[int, int]) -> tuple[int, int]:
    """The batch sizes a plan built from an ONNX package should accept: the package's min up to the request."""
    high = max(batch_bounds[1], profile.min)
    if profile.max is not None:
        high = min(high, profile.max)
    return profile.min, high


PlanBuilder = Callable[[bytes, PlanSettings], bytes]


def load_or_build_plan(
    onnx_path: str | Path,
    cache_root: str | Path,
    compute_capability: str,
    tensorrt_version: str,
    settings: PlanSettings = PlanSettings(),
    build: PlanBuilder | None = None,
) -> bytes:
    """The cached plan for this ONNX file, GPU and TensorRT version; built (and cached) on first use."""
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise ModelNotFoundError(f"no ONNX file at {onnx_path}")
    onnx_model = onnx_path.read_bytes()
    key = plan_cache_key(
        hashlib.sha256(onnx_model).hexdigest(),
        compute_capability,
        tensorrt_version,
        settings.fp16,
        settings.batch_min,
        settings.opt,
        settings.batch_max,
    )
    path = plan_cache_path(cache_root, key)
    if path.is_file():
        return path.read_bytes()
    plan = (build or build_plan)(onnx_model, settings)
    atomic_write(path, plan)
    return plan


def _is_static(dim: int | str | None) -> bool:
    return isinstance(dim, int) and dim >= 0


def _check_batch_range(batch_min: int, batch_opt: int, batch_max: int) -> None:
    if not 1 <= batch_min <= batch_opt <= batch_max:
        raise ParameterError(
            f"batch sizes must satisfy 1 <= min <= opt <= max, got {batch_min}, {batch_opt}, {batch_max}"
        )


# --- TensorRT itself: needs the library (and a GPU to build or run) -----------------------------


@dataclass(frozen=True)
class BuildRecipe:
    """How this TensorRT builds the plan PlanSettings ask for."""

    network_flags: int  # for Builder.create_network
    fp16_flag: Any  # BuilderFlag.FP16 to set (TensorRT 10 with fp16), else None
    convert_to_fp16: bool  # strongly typed (11) with fp16: the ONNX is made float16 first


def build_recipe(trt: Any, fp16: bool) -> BuildRecipe:
    """TensorRT 10 (BuilderFlag.FP16 exists): a weakly typed network, the flag lets the builder pick
    fp16 kernels. TensorRT 11 (it does not): strongly typed, the precision is the ONNX's own."""
    fp16_flag = getattr(trt.BuilderFlag, "FP16", None)
    if fp16_flag is not None:
        return BuildRecipe(0, fp16_flag if fp16 else None, False)  # 10: explicit batch is the only mode
    strongly_typed = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    return BuildRecipe(strongly_typed, None, fp16)


def fp16_onnx(onnx_model: bytes) -> bytes:
    """The model with its float32 weights and activations in float16, inputs and outputs kept float32
    (ONNX Runtime's converter; what TensorRT 11's strong typing needs to build an fp16 plan)."""
    onnx = import_optional("onnx", extra="tensorrt", what="an fp16 plan with TensorRT 11 (ONNX float16 conversion)")
    float16 = import_optional(
        "onnxruntime.transformers.float16", extra="onnxruntime", what="an fp16 plan with TensorRT 11"
    )
    model = onnx.load_from_string(onnx_model)
    return float16.convert_float_to_float16(model, keep_io_types=True).SerializeToString()


def build_plan(onnx_model: bytes, settings: PlanSettings) -> bytes:
    """Parse the ONNX model with TensorRT and build a serialized plan (on the current CUDA device)."""
    trt = import_tensorrt()
    recipe = build_recipe(trt, settings.fp16)
    if recipe.convert_to_fp16:
        onnx_model = fp16_onnx(onnx_model)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(recipe.network_flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_model):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelFormatError(f"TensorRT cannot parse the ONNX model: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    if recipe.fp16_flag is not None:
        config.set_flag(recipe.fp16_flag)
    _add_optimization_profile(builder, network, config, settings)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ModelError("TensorRT could not build a plan from the ONNX model (see the TensorRT log above)")
    return bytes(serialized)


def _add_optimization_profile(builder: Any, network: Any, config: Any, settings: PlanSettings) -> None:
    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    dynamic = [tensor for tensor in inputs if any(dim < 0 for dim in tuple(tensor.shape))]
    if not dynamic:
        return
    profile = builder.create_optimization_profile()
    for tensor in dynamic:
        low, opt, high = optimization_profile(tuple(tensor.shape), settings.batch_min, settings.batch_max, settings.opt)
        profile.set_shape(tensor.name, low, opt, high)
    config.add_optimization_profile(profile)


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: Shape  # -1 for dynamic dimensions
    dtype: np.dtype


class TensorRTBackend:
    """One engine and one execution context on one GPU; `run` calls are serialized by a lock.

    A NumPy batch is copied to the GPU and the outputs back; a CuPy batch is bound in place and the
    outputs stay on the GPU (copies of the bound buffers, which the next run reuses).
    """

    name = "tensorrt"

    def __init__(self, plan: bytes, *, name: str, device: str = "cuda") -> None:
        kind, index = parse_device(device, name)
        if kind != "cuda":
            raise ParameterError(f"{name}: TensorRT runs only on a CUDA device, not {device!r}")
        trt = import_tensorrt()
        self._cupy = import_cupy()
        self._device = self._cupy.cuda.Device(index)
        self._logger = trt.Logger(trt.Logger.WARNING)  # must outlive the runtime and the engine
        with self._device:
            self._runtime = trt.Runtime(self._logger)
            self.engine = _deserialize(trt, self._runtime, plan, name)
            self.context = self.engine.create_execution_context()
            self._stream = self._cupy.cuda.Stream(non_blocking=True)
        self._label = name
        self._input, self._outputs = _describe_io(trt, self.engine, name)
        self.input_dtype = self._input.dtype
        self.input_shape: list[int | str] = _named_shape(self._input.shape)
        self.fixed_batch = self._input.shape[0] if self._input.shape[0] >= 0 else None
        self.max_batch = _profile_max_batch(self.engine, self._input) if self.fixed_batch is None else None
        self.metadata: dict[str, str] = {}
        self._buffers: dict[str, Any] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_package_file(
        cls, path: Path, *, package: ModelPackage, name: str, options: LoadOptions
    ) -> TensorRTBackend:
        """A "trt-plan" package is deserialized; an "onnx" one is built into a plan (cached) first."""
        if package.format == "trt-plan":
            return cls(Path(path).read_bytes(), name=name, device=options.device)
        if package.format != "onnx":
            raise ParameterError(f'{name}: TensorRT loads "trt-plan" or "onnx" packages, not {package.format!r}')
        low, high = plan_batch_range(package.batch, options.batch_bounds)
        fp16 = "fp16" in (package.quantization, options.quantization)
        plan = build_plan_for_device(
            path, options.device, default_plan_cache_root(options.cache_dir), PlanSettings(fp16, low, high)
        )
        return cls(plan, name=name, device=options.device)

    @property
    def input_device(self) -> str:
        return f"cuda:{self._device.id}"

    def run(self, batch: Any) -> list[Any]:
        if self.fixed_batch is not None:
            return run_in_fixed_batches(self._run_once, batch, self.fixed_batch)
        if self.max_batch is None or len(batch) <= self.max_batch:
            return self._run_once(batch)
        chunks = [self._run_once(batch[i : i + self.max_batch]) for i in range(0, len(batch), self.max_batch)]
        return [module_of(parts[0]).concatenate(parts) for parts in zip(*chunks)]

    def _run_once(self, batch: Any) -> list[Any]:
        xp = module_of(batch)
        on_host = xp is np
        with self._lock, self._device:
            caller = None if on_host else self._cupy.cuda.get_current_stream()
            batch = xp.ascontiguousarray(batch, dtype=self.input_dtype)  # a conversion runs on `caller`
            if not self.context.set_input_shape(self._input.name, batch.shape):
                raise ParameterError(f"{self._label}: batch shape {batch.shape} is outside the plan's profile")
            reported = {tensor.name: tuple(self.context.get_tensor_shape(tensor.name)) for tensor in self._outputs}
            shapes = output_shapes_for_batch(reported, len(batch))
            if on_host:
                self._bind(self._input, batch.shape).set(batch, stream=self._stream)
            else:
                self.context.set_tensor_address(self._input.name, batch.data.ptr)
                hand_off(caller, self._stream)  # the engine reads what `caller` wrote, not before
            outputs = [self._bind(tensor, shapes[tensor.name]) for tensor in self._outputs]
            if not self.context.execute_async_v3(self._stream.ptr):
                raise ModelError(f"{self._label}: TensorRT failed to run the batch (see the TensorRT log above)")
            if on_host:
                results = [output.get(stream=self._stream) for output in outputs]
                self._stream.synchronize()
                return results
            # The copies run on the caller's stream, after the engine, from CuPy's pool for that
            # stream (memory freed there is reused there, in order); the next run overwrites the
            # bound buffers on this backend's stream only after them.
            hand_off(self._stream, caller)
            results = [output.copy() for output in outputs]
            hand_off(caller, self._stream)
        return results

    def _bind(self, tensor: TensorInfo, shape: Shape) -> Any:
        """A device buffer of this shape for the tensor (reused while the shape stays), bound to it."""
        buffer = self._buffers.get(tensor.name)
        if buffer is None or buffer.shape != tuple(shape):
            with self._stream:  # allocated (and, once replaced, freed) in order with the engine's work
                buffer = self._cupy.empty(shape, dtype=tensor.dtype)
            self._buffers[tensor.name] = buffer
        self.context.set_tensor_address(tensor.name, buffer.data.ptr)
        return buffer


def build_plan_for_device(onnx_path: Path, device: str, cache_root: Path, settings: PlanSettings) -> bytes:
    """Load or build the plan for the GPU behind `device`, keyed by its compute capability."""
    trt = import_tensorrt()
    cupy = import_cupy()
    _, index = parse_device(device)
    gpu = cupy.cuda.Device(index)
    with gpu:
        capability = format_compute_capability(gpu.compute_capability)
        return load_or_build_plan(onnx_path, cache_root, capability, trt.__version__, settings)


def _deserialize(trt: Any, runtime: Any, plan: bytes, name: str) -> Any:
    engine = runtime.deserialize_cuda_engine(plan)
    if engine is None:
        raise ModelFormatError(
            f"{name}: TensorRT {trt.__version__} cannot deserialize the plan "
            "(not a plan, or built by another TensorRT version or for another GPU)"
        )
    return engine


def _describe_io(trt: Any, engine: Any, name: str) -> tuple[TensorInfo, list[TensorInfo]]:
    inputs: list[TensorInfo] = []
    outputs: list[TensorInfo] = []
    for i in range(engine.num_io_tensors):
        tensor_name = engine.get_tensor_name(i)
        info = TensorInfo(
            tensor_name,
            tuple(engine.get_tensor_shape(tensor_name)),
            trt_dtype_to_numpy(engine.get_tensor_dtype(tensor_name).name),
        )
        is_input = engine.get_tensor_mode(tensor_name) == trt.TensorIOMode.INPUT
        (inputs if is_input else outputs).append(info)
    if len(inputs) != 1:
        raise ModelFormatError(f"{name}: the plan has {len(inputs)} inputs; streamer runs single-input models")
    return inputs[0], outputs


def _profile_max_batch(engine: Any, tensor: TensorInfo) -> int:
    _, _, high = engine.get_tensor_profile_shape(tensor.name, 0)
    return int(high[0])


def _named_shape(shape: Shape) -> list[int | str]:
    return ["batch" if i == 0 and dim < 0 else (dim if dim >= 0 else f"dim{i}") for i, dim in enumerate(shape)]
