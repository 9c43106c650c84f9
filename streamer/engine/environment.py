"""What this machine offers the engine: inference libraries, their versions, and GPUs.

`describe_compute_environment(scope)` probes lazily. It asks `importlib.metadata` first, so a library
that is not installed costs nothing, and imports a library (inside the probe, never at module
import) only to ask what a version number cannot tell, and only when the scope asks: ONNX Runtime's
execution providers, whether PyTorch sees CUDA, the GPUs. GPUs come from PyTorch when it sees CUDA,
else from CuPy, else from `nvidia-smi`. A probe that fails reads as "not there" and is logged:
describing the machine never stops a program.
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import os
import platform
import re
import shutil
import subprocess
from collections.abc import Callable
from typing import Any, NamedTuple

from .entities import BackendKind, ComputeEnvironment, GpuInfo, ProbeScope

logger = logging.getLogger(__name__)

# Every distribution below installs the same `onnxruntime` module: two of them shadow each other.
ONNXRUNTIME_DISTRIBUTIONS = (
    "onnxruntime",
    "onnxruntime-gpu",
    "onnxruntime-openvino",
    "onnxruntime-directml",
    "onnxruntime-qnn",
)
TENSORRT_DISTRIBUTIONS = ("tensorrt", "tensorrt-cu12", "tensorrt-cu13", "tensorrt-cu11")
CUPY_DISTRIBUTIONS = ("cupy", "cupy-cuda12x", "cupy-cuda13x", "cupy-cuda11x")
# The ONNX opset each ONNX Runtime release implements (onnxruntime.ai/docs/reference/compatibility).
ONNXRUNTIME_OPSETS: dict[tuple[int, int], int] = {
    (1, 10): 15,
    (1, 11): 16,
    (1, 12): 17,
    (1, 13): 17,
    (1, 14): 18,
    (1, 15): 19,
    (1, 16): 19,
    (1, 17): 20,
    (1, 18): 21,
    (1, 19): 21,
    (1, 20): 21,
}
NVIDIA_SMI_TIMEOUT_S = 5.0
NVIDIA_SMI_QUERY = ("--query-gpu=index,name,compute_cap,memory.total", "--format=csv,noheader,nounits")
COMPUTE_CAPABILITY_PATTERN = re.compile(r"\d+\.\d+")
CUDA_VERSION_PATTERN = re.compile(r"CUDA Version:\s*(\d+\.\d+)")
RELEASE_PATTERN = re.compile(r"\d+(\.\d+)*")
CUDA_PROVIDERS = frozenset({"CUDAExecutionProvider", "TensorrtExecutionProvider"})


class GpuProbe(NamedTuple):
    gpus: list[GpuInfo]
    cuda_version: str | None


def describe_compute_environment(scope: ProbeScope = ProbeScope()) -> ComputeEnvironment:
    """This machine as negotiation sees it, asking only what `scope` names (see ProbeScope).
    Safe to call anywhere, but it may take seconds: call it from a worker thread in async code."""
    warn_about_conflicting_onnxruntime()
    onnxruntime_version = installed_version(*ONNXRUNTIME_DISTRIBUTIONS)
    torch_version = installed_version("torch")
    torch_cuda = scope.gpus and "torch" in scope.backends and torch_version is not None and torch_sees_cuda()
    torch_unasked = torch_version is not None and "torch" not in scope.backends
    gpus, cuda_version = probe_gpus(torch_cuda, torch_last=torch_unasked) if scope.gpus else GpuProbe([], None)
    asks_onnxruntime = onnxruntime_version is not None and "onnxruntime" in scope.backends
    return ComputeEnvironment(
        os=platform.platform(),
        python=platform.python_version(),
        cpu_count=usable_cpu_count(),
        gpus=gpus,
        cuda_version=cuda_version,
        onnxruntime_version=onnxruntime_version,
        onnxruntime_providers=onnxruntime_providers() if asks_onnxruntime else [],
        max_onnx_opset=max_onnx_opset(onnxruntime_version) if scope.onnx_opset else None,
        torch_version=torch_version,
        torch_cuda=torch_cuda,
        tensorrt_version=installed_version(*TENSORRT_DISTRIBUTIONS),
        cupy_version=installed_version(*CUPY_DISTRIBUTIONS),
    )


@functools.lru_cache(maxsize=None)
def compute_environment(scope: ProbeScope = ProbeScope()) -> ComputeEnvironment:
    """This machine as far as `scope` asks, probed once per process and scope (it may take seconds)."""
    return describe_compute_environment(scope)


def cuda_unusable_reason(backend: BackendKind, env: ComputeEnvironment) -> str | None:
    """Why an installed `backend` cannot use this machine's GPUs, or None when it can."""
    if backend == "onnxruntime" and not CUDA_PROVIDERS.intersection(env.onnxruntime_providers):
        present = ", ".join(env.onnxruntime_providers) or "none"
        return (
            f"ONNX Runtime has no CUDA execution provider (it has: {present}); "
            "install onnxruntime-gpu in place of onnxruntime"
        )
    if backend == "torch" and not env.torch_cuda:
        return f"PyTorch {env.torch_version} cannot use CUDA (a CPU-only build, or no driver)"
    return None


def parse_version(text: str) -> tuple[int, ...] | None:
    """The numeric release of a version: "2.4.1+cu121" -> (2, 4, 1), "2.5.0a0" -> (2, 5, 0); None if unreadable."""
    match = RELEASE_PATTERN.match(text.strip())
    return tuple(int(part) for part in match.group(0).split(".")) if match else None


def comparable_versions(have: str, want: str) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """Both versions parsed and padded with zeros to one length ("2.4" == "2.4.0"); None if either is unreadable."""
    first, second = parse_version(have), parse_version(want)
    if first is None or second is None:
        return None
    width = max(len(first), len(second))
    return first + (0,) * (width - len(first)), second + (0,) * (width - len(second))


def installed_version(*distributions: str) -> str | None:
    """The version of the first of `distributions` that is installed, without importing anything."""
    for name in distributions:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def conflicting_onnxruntime() -> list[str]:
    """The ONNX Runtime distributions installed side by side (they overwrite each other's files), or []."""
    present = [name for name in ONNXRUNTIME_DISTRIBUTIONS if installed_version(name) is not None]
    return present if len(present) > 1 else []


def warn_about_conflicting_onnxruntime() -> None:
    conflicting = conflicting_onnxruntime()
    if conflicting:
        logger.warning(
            "%s are all installed and share one `onnxruntime` module, so one shadows the others; "
            "uninstall all of them, then install only the one you need (onnxruntime-gpu for a GPU)",
            " and ".join(conflicting),
        )


def usable_cpu_count() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


# --- libraries ---------------------------------------------------------------------------------


def onnxruntime_providers() -> list[str]:
    try:
        import onnxruntime
    except (ImportError, OSError) as exc:
        logger.warning("ONNX Runtime is installed but cannot be imported: %s", exc)
        return []
    return list(onnxruntime.get_available_providers())


def max_onnx_opset(onnxruntime_version: str | None) -> int | None:
    """The newest ONNX opset this machine runs: ONNX Runtime's when we know it, else the onnx library's."""
    known = opset_for_onnxruntime(onnxruntime_version) if onnxruntime_version else None
    return known if known is not None else onnx_library_opset()


def opset_for_onnxruntime(version: str) -> int | None:
    """The ONNX opset an ONNX Runtime release implements, from the published table; None if not in it."""
    parsed = parse_version(version)
    if parsed is None or len(parsed) < 2:
        return None
    return ONNXRUNTIME_OPSETS.get((parsed[0], parsed[1]))


def onnx_library_opset() -> int | None:
    if installed_version("onnx") is None:
        return None
    try:
        from onnx import defs
    except (ImportError, OSError) as exc:
        logger.warning("onnx is installed but cannot be imported: %s", exc)
        return None
    return int(defs.onnx_opset_version())


def torch_sees_cuda() -> bool:
    try:
        import torch
    except (ImportError, OSError) as exc:
        logger.warning("PyTorch is installed but cannot be imported: %s", exc)
        return False
    return bool(torch.cuda.is_available())


# --- GPUs --------------------------------------------------------------------------------------


def probe_gpus(torch_cuda: bool, torch_last: bool = False) -> GpuProbe:
    """The GPUs from the first source that answers: PyTorch (when it sees CUDA), CuPy, nvidia-smi,
    then, with `torch_last`, PyTorch asked only now (a GPU was asked for and nothing else saw one)."""
    probes: list[Callable[[], GpuProbe | None]] = []
    if torch_cuda:
        probes.append(gpus_from_torch)
    if installed_version(*CUPY_DISTRIBUTIONS) is not None:
        probes.append(gpus_from_cupy)
    if shutil.which("nvidia-smi") is not None:
        probes.append(gpus_from_nvidia_smi)
    if torch_last:
        probes.append(lambda: gpus_from_torch() if torch_sees_cuda() else None)
    for probe in probes:
        found = probe()
        if found is not None and found.gpus:
            return found
    return GpuProbe([], None)


def gpus_from_torch() -> GpuProbe | None:
    import torch

    try:
        gpus = [_torch_gpu(torch, index) for index in range(torch.cuda.device_count())]
    except RuntimeError as exc:
        logger.warning("PyTorch sees CUDA but cannot describe its GPUs: %s", exc)
        return None
    return GpuProbe(gpus, torch.version.cuda)


def _torch_gpu(torch: Any, index: int) -> GpuInfo:
    properties = torch.cuda.get_device_properties(index)
    return GpuInfo(
        index=index,
        name=properties.name,
        compute_capability=f"{properties.major}.{properties.minor}",
        memory_mb=properties.total_memory // 2**20,
    )


def gpus_from_cupy() -> GpuProbe | None:
    try:
        import cupy

        runtime = cupy.cuda.runtime
        gpus = [_cupy_gpu(runtime.getDeviceProperties(index), index) for index in range(runtime.getDeviceCount())]
        version = runtime.runtimeGetVersion()
    except (ImportError, OSError, RuntimeError) as exc:  # CUDARuntimeError is a RuntimeError
        logger.debug("CuPy cannot describe the GPUs: %s", exc)
        return None
    return GpuProbe(gpus, f"{version // 1000}.{version % 1000 // 10}")


def _cupy_gpu(properties: dict[str, Any], index: int) -> GpuInfo:
    name = properties["name"]
    return GpuInfo(
        index=index,
        name=name.decode() if isinstance(name, bytes) else str(name),
        compute_capability=f"{properties['major']}.{properties['minor']}",
        memory_mb=int(properties["totalGlobalMem"]) // 2**20,
    )


def gpus_from_nvidia_smi() -> GpuProbe | None:
    listing = run_nvidia_smi(*NVIDIA_SMI_QUERY)
    if listing is None:
        return None
    try:
        gpus = parse_nvidia_smi_gpus(listing)
    except ValueError as exc:
        logger.debug("cannot read nvidia-smi's GPU list: %s", exc)
        return None
    return GpuProbe(gpus, parse_cuda_version(run_nvidia_smi() or ""))


def run_nvidia_smi(*arguments: str) -> str | None:
    """nvidia-smi's output, or None when it fails or takes longer than NVIDIA_SMI_TIMEOUT_S."""
    try:
        done = subprocess.run(
            ["nvidia-smi", *arguments], capture_output=True, text=True, timeout=NVIDIA_SMI_TIMEOUT_S, check=True
        )
    except (OSError, subprocess.SubprocessError) as exc:
        logger.debug("nvidia-smi failed: %s", exc)
        return None
    return done.stdout


def parse_nvidia_smi_gpus(listing: str) -> list[GpuInfo]:
    """GPUs from `nvidia-smi --query-gpu=index,name,compute_cap,memory.total --format=csv,noheader[,nounits]`."""
    return [parse_nvidia_smi_line(line) for line in listing.splitlines() if line.strip()]


def parse_nvidia_smi_line(line: str) -> GpuInfo:
    """One line such as "0, NVIDIA H100 80GB HBM3, 9.0, 81559"; ValueError when it is not one."""
    fields = [field.strip() for field in line.split(",")]
    if len(fields) < 4 or not COMPUTE_CAPABILITY_PATTERN.fullmatch(fields[-2]):
        raise ValueError(f"unexpected nvidia-smi line: {line!r}")
    memory = fields[-1].removesuffix("MiB").strip()
    return GpuInfo(
        index=int(fields[0]),
        name=", ".join(fields[1:-2]),
        compute_capability=fields[-2],
        memory_mb=int(memory) if memory.isdigit() else None,
    )


def parse_cuda_version(banner: str) -> str | None:
    """The "CUDA Version: 12.4" that plain `nvidia-smi` prints (the newest CUDA the driver supports)."""
    match = CUDA_VERSION_PATTERN.search(banner)
    return match.group(1) if match else None


# --- rendering ---------------------------------------------------------------------------------


def render_environment(env: ComputeEnvironment) -> str:
    """An aligned two-column table of `env`: what `streamer describe env` prints."""
    rows = environment_rows(env)
    width = max(len(key) for key, _ in rows)
    return "\n".join(f"{key.ljust(width)}  {value}" for key, value in rows)


def environment_rows(env: ComputeEnvironment) -> list[tuple[str, str]]:
    rows = [("os", env.os or "unknown"), ("python", env.python or "unknown"), ("cpus", str(env.cpu_count))]
    rows += [
        ("onnxruntime", _describe_onnxruntime(env)),
        ("max onnx opset", str(env.max_onnx_opset) if env.max_onnx_opset is not None else "unknown"),
        ("torch", _describe_torch(env)),
        ("tensorrt", env.tensorrt_version or "not installed"),
        ("cupy", env.cupy_version or "not installed"),
        ("cuda", env.cuda_version or "none"),
    ]
    rows += [(f"gpu {gpu.index}", _describe_gpu(gpu)) for gpu in env.gpus] or [("gpus", "none")]
    rows.append(("backends", describe_backends(env)))
    return rows


def describe_backends(env: ComputeEnvironment) -> str:
    """Each installed backend with the devices it can use here, e.g. "onnxruntime (cpu, cuda)"."""
    installed = env.installed_backends()
    if not installed:
        return "none (pip install onnxruntime)"
    return ", ".join(f"{backend} ({', '.join(backend_devices(backend, env)) or 'no device'})" for backend in installed)


def backend_devices(backend: BackendKind, env: ComputeEnvironment) -> list[str]:
    devices = [] if backend == "tensorrt" else ["cpu"]
    if env.gpus and cuda_unusable_reason(backend, env) is None:
        devices.append("cuda")
    return devices


def _describe_onnxruntime(env: ComputeEnvironment) -> str:
    if env.onnxruntime_version is None:
        return "not installed"
    return f"{env.onnxruntime_version} ({', '.join(env.onnxruntime_providers) or 'no providers'})"


def _describe_torch(env: ComputeEnvironment) -> str:
    if env.torch_version is None:
        return "not installed"
    return f"{env.torch_version} ({'CUDA available' if env.torch_cuda else 'no CUDA'})"


def _describe_gpu(gpu: GpuInfo) -> str:
    memory = f", {gpu.memory_mb} MiB" if gpu.memory_mb is not None else ""
    return f"{gpu.name}, compute capability {gpu.compute_capability}{memory}"

