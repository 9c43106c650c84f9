"""Negotiation: pick the package of a model that runs best here, and say why each other one cannot.

A chain of small pure filters narrows the model's packages. Each filter returns the packages it
keeps and a `Rejection` (package, filter, reason) for every other one; a package meets the filters
in `FILTERS` order, so it is rejected once, by the first filter it fails. The survivors are ranked
by `rank_key`: backend on device (TensorRT > ONNX Runtime CUDA > PyTorch CUDA > ONNX Runtime CPU >
PyTorch CPU), then quantization, dynamic batch over static, batch fit and package id.

Quantization: `options.quantization` names the one wanted, or lists those allowed. Unset, a GPU takes
what ranks best there, while a CPU keeps to fp32: int8 trades accuracy for speed, so a CPU run uses an
int8 package (`streamer models quantize --int8`) only when the list allows it, and then prefers it.

The machine comes in as a `ComputeEnvironment` value and the request as `LoadOptions`, so every
decision here is a function of data: tests need no GPU and no patching. `negotiate_here` is the one
place that asks the machine (`environment.compute_environment`) before deciding.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import anyio

from ..errors import NoCompatiblePackageError, ParameterError
from .entities import (
    BackendKind,
    ComputeEnvironment,
    GpuInfo,
    LoadOptions,
    ModelDocument,
    ModelPackage,
    ProbeScope,
    RuntimeRequirements,
)
from .environment import comparable_versions, compute_environment, cuda_unusable_reason

BACKEND_NAMES: dict[BackendKind, str] = {"onnxruntime": "ONNX Runtime", "torch": "PyTorch", "tensorrt": "TensorRT"}
INSTALL_HINTS: dict[BackendKind, str] = {
    "onnxruntime": "onnxruntime",
    "torch": "'streamer[torch]'",
    "tensorrt": "'streamer[tensorrt]'",
}
BACKEND_ORDER: dict[tuple[str, str], int] = {
    ("tensorrt", "cuda"): 0,
    ("onnxruntime", "cuda"): 1,
    ("torch", "cuda"): 2,
    ("onnxruntime", "cpu"): 3,
    ("torch", "cpu"): 4,
}
# On CPU int8 ranks first, but only once the options allow it (see `quantization`).
QUANTIZATION_ORDER: dict[str, tuple[str, ...]] = {"cuda": ("int8", "fp16", "fp32"), "cpu": ("int8", "fp32", "fp16")}
DEVICE_PATTERN = re.compile(r"cpu|cuda(:\d+)?")


@dataclass(frozen=True)
class Rejection:
    """A package one filter turned down, and why."""

    package: ModelPackage
    filter: str
    reason: str


@dataclass(frozen=True)
class Negotiation:
    """The package chosen, every package kept (best first) and every package rejected."""

    model_id: str
    chosen: ModelPackage
    ranked: tuple[ModelPackage, ...]
    rejections: tuple[Rejection, ...]


Packages = Sequence[ModelPackage]
Filter = Callable[[Packages, LoadOptions, ComputeEnvironment], tuple[list[ModelPackage], list[Rejection]]]
Check = Callable[[ModelPackage, LoadOptions, ComputeEnvironment], str | None]
RequirementCheck = Callable[[RuntimeRequirements, LoadOptions, ComputeEnvironment], str | None]


def package_filter(check: Check) -> Filter:
    """A filter from a per-package check that returns None to keep the package, else the reason."""
    name = check.__name__.replace("_", " ")

    @functools.wraps(check)
    def apply(
        packages: Packages, options: LoadOptions, env: ComputeEnvironment
    ) -> tuple[list[ModelPackage], list[Rejection]]:
        kept: list[ModelPackage] = []
        rejected: list[Rejection] = []
        for package in packages:
            reason = check(package, options, env)
            if reason is None:
                kept.append(package)
            else:
                rejected.append(Rejection(package, name, reason))
        return kept, rejected

    return apply


# --- the filters -------------------------------------------------------------------------------


@package_filter
def not_disabled(package: ModelPackage, options: LoadOptions, env: ComputeEnvironment) -> str | None:
    if package.backend in options.disabled_backends:
        return f"backend {package.backend} is disabled (disabled_backends)"
    return None


@package_filter
def backend_installed(package: ModelPackage, options: LoadOptions, env: ComputeEnvironment) -> str | None:
    if package.backend in env.installed_backends():
        return None
    return f"{BACKEND_NAMES[package.backend]} is not installed (pip install {install_hint(package.backend, options)})"


@package_filter
def requested_backend(package: ModelPackage, options: LoadOptions, env: ComputeEnvironment) -> str | None:
    if options.backend is None or package.backend == options.backend:
        return None
    return f"backend {options.backend} was requested"


@package_filter
def device_available(package: ModelPackage, options: LoadOptions, env: ComputeEnvironment) -> str | None:
    if options.device_kind == "cpu":
        return _cpu_unsuitable_reason(package)
    if package.requirements.device == "cpu":
        return "the package runs only on CPU"
    if selected_gpu(options, env) is None:
        return missing_gpu_reason(options, env)
    return cuda_unusable_reason(package.backend, env)


@package_filter
def batch_size(package: ModelPackage, options: LoadOptions, env: ComputeEnvironment) -> str | None:
    low, high = options.batch_bounds
    if package.batch.accepts(low, high):
        return None
    wanted = str(low) if low == high else f"{low}..{high}"
    return f"{package.batch.describe()} cannot run batches of {wanted}"


@package_filter
def quantization(package: ModelPackage, options: LoadOptions, env: ComputeEnvironment) -> str | None:
    allowed = options.allowed_quantizations
    if allowed is not None:
        if package.quantization in allowed:
            return None
        if isinstance(options.quantization, str):
            return f"{package.quantization}, but {options.quantization} was requested"
        return f"{package.quantization} is not among the quantizations allowed ({', '.join(allowed)})"
    if options.device_kind == "cpu":
        return CPU_QUANTIZATION_REASONS.get(package.quantization)
    return None


# Why a package is not used on CPU unless its quantization is asked for or allowed.
CPU_QUANTIZATION_REASONS = {
    "fp16": "fp16 runs slowly or not at all on CPU",
    "int8": 'int8 trades accuracy for speed, so on CPU it is used only when allowed: quantization = ["fp32", "int8"]',
}


@package_filter
def runtime_requirements(package: ModelPackage, options: LoadOptions, env: ComputeEnvironment) -> str | None:
    for check in REQUIREMENT_CHECKS:
        reason = check(package.requirements, options, env)
        if reason is not None:
            return reason
    return None


FILTERS: tuple[Filter, ...] = (
    not_disabled,
    backend_installed,
    requested_backend,
    device_available,
    batch_size,
    quantization,
    runtime_requirements,
)


# --- what the filters ask of the machine -------------------------------------------------------


def install_hint(backend: BackendKind, options: LoadOptions) -> str:
    """What to `pip install` for `backend`; ONNX Runtime's GPU build when a GPU is asked for."""
    if backend == "onnxruntime" and options.device_kind == "cuda":
        return "onnxruntime-gpu"
    return INSTALL_HINTS[backend]


def selected_gpu(options: LoadOptions, env: ComputeEnvironment) -> GpuInfo | None:
    """The GPU `options.device` names, when the machine has it (None on CPU)."""
    if options.device_kind != "cuda":
        return None
    return next((gpu for gpu in env.gpus if gpu.index == options.device_index), None)


def missing_gpu_reason(options: LoadOptions, env: ComputeEnvironment) -> str:
    if not env.gpus:
        return "no CUDA GPU found on this machine"
    present = ", ".join(str(gpu.index) for gpu in env.gpus)
    return f"no GPU with index {options.device_index} (GPUs here: {present})"


def _cpu_unsuitable_reason(package: ModelPackage) -> str | None:
    if package.backend == "tensorrt":
        return "TensorRT runs only on CUDA GPUs"
    if package.requirements.device == "cuda":
        return "the package needs a CUDA GPU"
    return None


# --- runtime requirements, one check each ------------------------------------------------------


def onnx_opset_reason(
    requirements: RuntimeRequirements, options: LoadOptions, env: ComputeEnvironment
) -> str | None:
    needed, supported = requirements.onnx_opset, env.max_onnx_opset
    if needed is None or supported is None or needed <= supported:
        return None
    return f"needs ONNX opset {needed}, this machine supports up to {supported}"


def compute_capability_reason(
    requirements: RuntimeRequirements, options: LoadOptions, env: ComputeEnvironment
) -> str | None:
    needed, gpu = requirements.cuda_compute_capability, selected_gpu(options, env)
    if needed is None or gpu is None:
        return None
    versions = comparable_versions(gpu.compute_capability, needed)
    where = f"GPU {gpu.index} ({gpu.name}) has {gpu.compute_capability}"
    if versions is None:
        return f"cannot compare compute capability {needed!r} with {where}"
    have, want = versions
    if requirements.exact_compute_capability and have != want:
        return f"built for compute capability {needed} exactly; {where}"
    if have < want:
        return f"needs compute capability >= {needed}; {where}"
    return None


def tensorrt_version_reason(
    requirements: RuntimeRequirements, options: LoadOptions, env: ComputeEnvironment
) -> str | None:
    needed, present = requirements.tensorrt_version, env.tensorrt_version
    if needed is None:
        return None
    if present is None:
        return f"needs TensorRT {needed}, which is not installed"
    versions = comparable_versions(present, needed)
    if versions is None:
        return f"cannot compare TensorRT {needed!r} with the installed {present!r}"
    if versions[0][:2] != versions[1][:2]:
        return f"built with TensorRT {needed}; plans need the same major.minor, this machine has {present}"
    return None


def torch_version_reason(
    requirements: RuntimeRequirements, options: LoadOptions, env: ComputeEnvironment
) -> str | None:
    needed, present = requirements.torch_version, env.torch_version
    if needed is None:
        return None
    if present is None:
        return f"needs PyTorch >= {needed}, which is not installed"
    versions = comparable_versions(present, needed)
    if versions is None:
        return f"cannot compare PyTorch {needed!r} with the installed {present!r}"
    if versions[0] < versions[1]:
        return f"needs PyTorch >= {needed}, this machine has {present}"
    return None


REQUIREMENT_CHECKS: tuple[RequirementCheck, ...] = (
    onnx_opset_reason,
    compute_capability_reason,
    tensorrt_version_reason,
    torch_version_reason,
)


# --- ranking -----------------------------------------------------------------------------------


def rank_key(package: ModelPackage, options: LoadOptions) -> tuple[int, int, int, int, str]:
    """Sort key, best first: backend on device, quantization, dynamic batch, batch fit, package id."""
    device = options.device_kind
    return (
        BACKEND_ORDER.get((package.backend, device), len(BACKEND_ORDER)),
        QUANTIZATION_ORDER[device].index(package.quantization),
        0 if package.batch.dynamic else 1,
        batch_misfit(package, options),
        package.package_id,
    )


def batch_misfit(package: ModelPackage, options: LoadOptions) -> int:
    """How far a static batch size is from the largest batch asked for (0 for a dynamic batch)."""
    if package.batch.dynamic:
        return 0
    return abs((package.batch.size or 1) - options.batch_bounds[1])


def rank(packages: Packages, options: LoadOptions) -> list[ModelPackage]:
    return sorted(packages, key=lambda package: rank_key(package, options))


# --- negotiate ---------------------------------------------------------------------------------


def negotiate(document: ModelDocument, options: LoadOptions, env: ComputeEnvironment) -> Negotiation:
    """The best package of `document` for `options` on `env`; NoCompatiblePackageError lists why none fits."""
    check_options(options)
    if not document.packages:
        raise NoCompatiblePackageError(f"model {document.model_id!r} has no packages to choose from")
    kept, rejections = apply_filters(document.packages, options, env)
    rejections = in_document_order(document.packages, rejections)
    if not kept:
        raise NoCompatiblePackageError(no_package_message(document, options, rejections))
    ranked = tuple(rank(kept, options))
    return Negotiation(document.model_id, ranked[0], ranked, tuple(rejections))


async def negotiate_here(document: ModelDocument, options: LoadOptions) -> Negotiation:
    """Step two of loading: negotiate `document` for this machine, probing only what it needs (once per
    process and scope), in a worker thread."""
    return await anyio.to_thread.run_sync(_negotiate_here, document, options)


def _negotiate_here(document: ModelDocument, options: LoadOptions) -> Negotiation:
    return negotiate(document, options, compute_environment(probe_scope(document, options)))


def probe_scope(document: ModelDocument, options: LoadOptions) -> ProbeScope:
    """What negotiating `document` for `options` needs to ask the machine, and no more: the backends
    of the packages still in the running (not disabled, the one requested), GPUs only for a CUDA
    device, the newest ONNX opset only when such a package declares one. So a CPU run of an ONNX
    model never imports PyTorch just to hear that it has no CUDA."""
    candidates = [
        package
        for package in document.packages
        if package.backend not in options.disabled_backends and options.backend in (None, package.backend)
    ]
    return ProbeScope(
        backends=frozenset(package.backend for package in candidates),
        gpus=options.device_kind == "cuda",
        onnx_opset=any(package.requirements.onnx_opset is not None for package in candidates),
    )


def check_options(options: LoadOptions) -> None:
    """Raise ParameterError for options that contradict themselves."""
    if not DEVICE_PATTERN.fullmatch(options.device):
        raise ParameterError(f"device {options.device!r} is not 'cpu', 'cuda' or 'cuda:N'")
    if options.backend is not None and options.backend in options.disabled_backends:
        raise ParameterError(f"backend {options.backend!r} is both requested and in disabled_backends")
    low, high = options.batch_bounds
    if low > high:
        raise ParameterError(f"batch_size: min {low} is larger than max {high}")


def apply_filters(
    packages: Packages, options: LoadOptions, env: ComputeEnvironment, filters: Sequence[Filter] = FILTERS
) -> tuple[list[ModelPackage], list[Rejection]]:
    """Run the packages through `filters` in order; each rejected package meets no later filter."""
    kept = list(packages)
    rejections: list[Rejection] = []
    for apply in filters:
        kept, rejected = apply(kept, options, env)
        rejections.extend(rejected)
    return kept, rejections


def in_document_order(packages: Packages, rejections: Sequence[Rejection]) -> list[Rejection]:
    position = {id(package): index for index, package in enumerate(packages)}
    return sorted(rejections, key=lambda rejection: position.get(id(rejection.package), len(position)))


def no_package_message(document: ModelDocument, options: LoadOptions, rejections: Sequence[Rejection]) -> str:
    lines = [f"model {document.model_id!r}: no package fits {describe_request(options)}; every package was rejected:"]
    for rejection in rejections:
        package = rejection.package
        lines.append(f"  - {package.package_id} ({describe_package(package)}): {rejection.filter}: {rejection.reason}")
    lines.append("Change the load options (device, backend, batch_size, quantization), or install what a reason names")
    return "\n".join(lines)


def describe_request(options: LoadOptions) -> str:
    """Like "device cpu, batch 4", plus the backend and quantization when they were asked for."""
    low, high = options.batch_bounds
    parts = [f"device {options.device}", f"batch {low}" if low == high else f"batch {low}..{high}"]
    if options.backend is not None:
        parts.append(f"backend {options.backend}")
    if options.allowed_quantizations is not None:
        parts.append(f"quantization {' or '.join(options.allowed_quantizations)}")
    return ", ".join(parts)


def describe_package(package: ModelPackage) -> str:
    return f"{package.backend}, {package.quantization}, {package.batch.describe()}"


# --- rendering ---------------------------------------------------------------------------------


def render_negotiation(negotiation: Negotiation) -> str:
    """A table for `streamer describe`: the package chosen, the ranking, and each rejection's reason."""
    chosen = negotiation.chosen
    lines = [f"model {negotiation.model_id}: chose {chosen.package_id} ({describe_package(chosen)})", ""]
    lines += format_table(["rank", "package", "backend", "quantization", "batch"], _ranked_rows(negotiation))
    lines += ["", "rejected:"]
    if negotiation.rejections:
        header = ["package", "backend", "quantization", "batch", "filter", "reason"]
        lines += format_table(header, [_rejected_row(rejection) for rejection in negotiation.rejections])
    else:
        lines.append("  (none)")
    return "\n".join(lines)


def _ranked_rows(negotiation: Negotiation) -> list[list[str]]:
    rows = []
    for place, package in enumerate(negotiation.ranked, start=1):
        marker = f"{place} *" if package is negotiation.chosen else str(place)
        rows.append([marker, package.package_id, package.backend, package.quantization, package.batch.describe()])
    return rows


def _rejected_row(rejection: Rejection) -> list[str]:
    package = rejection.package
    return [package.package_id, package.backend, package.quantization, package.batch.describe(), rejection.filter,
            rejection.reason]


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Rows as lines with aligned columns, indented two spaces, header first."""
    table = [list(header), *map(list, rows)]
    widths = [max(len(row[column]) for row in table) for column in range(len(header))]
    return ["  " + "  ".join(map(str.ljust, row, widths)).rstrip() for row in table]
