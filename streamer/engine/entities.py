"""What the engine talks about: models, their packages and files, load options, the machine.

A *model* (one architecture trained once) has several *packages*: ways to run it (backend x
quantization x batch profile), each a set of files with checksums. Weights providers describe
models as `ModelDocument`s (the JSON a registry serves, or `model.json` in a local folder);
negotiation picks a package for the `ComputeEnvironment` at hand and the `LoadOptions` asked for.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from ..errors import ParameterError

# Which library runs a package; the object that runs it is `engine.backends.base.Backend`.
BackendKind = Literal["onnxruntime", "torch", "tensorrt"]
Quantization = Literal["fp32", "fp16", "int8"]
Device = str  # "cpu", "cuda", "cuda:1"
PackageFormat = Literal["onnx", "torchscript", "torch-export", "trt-plan"]
Positive = Annotated[int, msgspec.Meta(gt=0)]


class Entity(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """Manifests reject keys they do not know, as configs do."""


class FileSpec(Entity, kw_only=True):
    """One file of a package. `name` is relative to the package folder; `url` is absent for local files."""

    name: Annotated[str, msgspec.Meta(min_length=1)]
    url: str | None = None
    size: int | None = None
    sha256: Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$")] | None = None


class BatchProfile(Entity, kw_only=True):
    """A static batch runs exactly `size` images per call; a dynamic one any count in [min, max]."""

    dynamic: bool = True
    size: Positive | None = None
    min: Positive = 1
    max: Positive | None = None

    def accepts(self, low: int, high: int) -> bool:
        """Whether every batch size in [low, high] can run (a static package pads and splits)."""
        if not self.dynamic:
            return True
        return self.min <= low and (self.max is None or high <= self.max)

    def describe(self) -> str:
        if not self.dynamic:
            return f"static {self.size}"
        return f"dynamic {self.min}..{self.max if self.max is not None else 'any'}"


class RuntimeRequirements(Entity, kw_only=True):
    """What the machine must offer for a package to run."""

    device: Literal["cpu", "cuda", "any"] = "any"
    onnx_opset: int | None = None
    cuda_compute_capability: str | None = None  # minimum, e.g. "8.0"
    exact_compute_capability: bool = False  # TensorRT plans run only on the GPU they were built for
    tensorrt_version: str | None = None  # plans need this exact major.minor
    torch_version: str | None = None  # minimum


class ModelPackage(Entity, kw_only=True):
    package_id: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
    backend: BackendKind
    format: PackageFormat
    quantization: Quantization = "fp32"
    batch: BatchProfile = msgspec.field(default_factory=BatchProfile)
    requirements: RuntimeRequirements = msgspec.field(default_factory=RuntimeRequirements)
    files: list[FileSpec] = []
    trusted: bool = True
    extra: dict[str, Any] = {}


class Dependency(Entity, kw_only=True):
    """Another model this one needs, loaded first and handed to it by `name`."""

    name: str
    model_id: str


class ModelDocument(Entity, kw_only=True):
    """Everything a provider knows of one model."""

    model_id: str
    task: str
    architecture: str
    input_size: tuple[int, int] | None = None  # width, height
    class_names: list[str] = []
    dependencies: list[Dependency] = []
    packages: list[ModelPackage] = []
    description: str = ""
    license: str = ""
    extra: dict[str, Any] = {}

    def package(self, package_id: str) -> ModelPackage | None:
        return next((p for p in self.packages if p.package_id == package_id), None)


class BatchRange(Entity, kw_only=True):
    min: Positive = 1
    max: Positive


class LoadOptions(Entity, kw_only=True):
    """How to load a model. Every field has a sensible default; see AutoModel.load."""

    backend: BackendKind | None = None
    device: Device = "cpu"
    batch_size: Positive | BatchRange = 4
    # One quantization (only it), or the ones allowed (on CPU int8 is then preferred, being faster).
    # None: the device's defaults; on CPU that is fp32 only, int8 and fp16 must be asked for.
    quantization: Quantization | Annotated[list[Quantization], msgspec.Meta(min_length=1)] | None = None
    onnx_execution_providers: list[str] | None = None
    disabled_backends: list[BackendKind] = []
    allow_untrusted_packages: bool = False
    cache_dir: str | None = None
    offline: bool = False
    registry_url: str | None = None
    registry_token: str | None = None
    architecture: str | None = None
    confidence: float | None = None
    iou: float | None = None
    input_size: tuple[int, int] | None = None
    # Letterbox each batch into the smallest stride-aligned size within input_size that its frames
    # need (graphs with dynamic height and width only). None: only when input_size is not given.
    fit_to_frames: bool | None = None
    threads: Positive = 1
    dependency_models_params: dict[str, dict[str, Any]] = {}

    @property
    def batch_bounds(self) -> tuple[int, int]:
        if isinstance(self.batch_size, BatchRange):
            return self.batch_size.min, self.batch_size.max
        return self.batch_size, self.batch_size

    @property
    def allowed_quantizations(self) -> tuple[Quantization, ...] | None:
        """The quantizations asked for or allowed, None when the device's defaults apply."""
        if self.quantization is None:
            return None
        return (self.quantization,) if isinstance(self.quantization, str) else tuple(self.quantization)

    @property
    def device_kind(self) -> str:
        return "cuda" if self.device.startswith("cuda") else "cpu"

    @property
    def device_index(self) -> int:
        _, _, index = self.device.partition(":")
        return int(index) if index else 0


def make_options(options: LoadOptions | None, overrides: dict[str, Any]) -> LoadOptions:
    """One checked LoadOptions from a struct and/or keyword arguments (bad ones: ParameterError)."""
    merged = {**(msgspec.to_builtins(options) if options is not None else {}), **overrides}
    try:
        return msgspec.convert(merged, type=LoadOptions)
    except msgspec.ValidationError as exc:
        raise ParameterError(f"invalid load options: {exc}") from exc


class GpuInfo(Entity, kw_only=True):
    index: int
    name: str
    compute_capability: str  # "9.0"
    memory_mb: int | None = None


ALL_BACKENDS: frozenset[BackendKind] = frozenset(("onnxruntime", "torch", "tensorrt"))


class ProbeScope(msgspec.Struct, frozen=True, kw_only=True):
    """What to ask the machine beyond installed versions (which cost nothing): the backends whose
    library is imported to ask it (PyTorch about CUDA, ONNX Runtime about its providers), whether
    to look for GPUs, and whether to work out the newest ONNX opset. The default asks everything."""

    backends: frozenset[BackendKind] = ALL_BACKENDS
    gpus: bool = True
    onnx_opset: bool = True


class ComputeEnvironment(Entity, kw_only=True):
    """The machine as negotiation sees it: passed in as data, so tests need no GPU. What a probe
    left out of its `ProbeScope` keeps its default (no GPUs, no providers, opset unknown)."""

    os: str = ""
    python: str = ""
    cpu_count: int = 1
    gpus: list[GpuInfo] = []
    cuda_version: str | None = None
    onnxruntime_version: str | None = None
    onnxruntime_providers: list[str] = []
    max_onnx_opset: int | None = None
    torch_version: str | None = None
    torch_cuda: bool = False
    tensorrt_version: str | None = None
    cupy_version: str | None = None

    def installed_backends(self) -> list[BackendKind]:
        found: list[BackendKind] = []
        if self.onnxruntime_version:
            found.append("onnxruntime")
        if self.torch_version:
            found.append("torch")
        if self.tensorrt_version:
            found.append("tensorrt")
        return found
