"""Open the backend a negotiated package asks for, on its fetched files."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping

from ...errors import PackageError
from ..entities import LoadOptions, ModelPackage
from .base import Backend

MODEL_SUFFIXES = (".onnx", ".pt", ".pt2", ".torchscript", ".ts", ".engine", ".plan")


def primary_file(package: ModelPackage, files: Mapping[str, Path]) -> Path:
    """The file holding the network: `extra.model_file`, else the first with a model suffix."""
    name = package.extra.get("model_file") or next(
        (spec.name for spec in package.files if spec.name.endswith(MODEL_SUFFIXES)), None
    )
    if name is None or name not in files:
        raise PackageError(f"package {package.package_id!r} has no model file ({', '.join(MODEL_SUFFIXES)})")
    return files[name]


def open_backend(
    package: ModelPackage,
    files: Mapping[str, Path],
    options: LoadOptions,
    prepare_onnx: Callable[[bytes, str | None], bytes] = lambda model, cache_root: model,
) -> Backend:
    path = primary_file(package, files)
    name = f"package {package.package_id!r} ({path.name})"
    if package.backend == "onnxruntime":
        from .onnx import OnnxRuntimeBackend

        return OnnxRuntimeBackend(
            prepare_onnx(path.read_bytes(), options.cache_dir),
            name=name,
            threads=options.threads,
            device=options.device,
            providers=options.onnx_execution_providers,
        )
    if package.backend == "torch":
        from .torch import TorchBackend

        return TorchBackend(
            path,
            name=name,
            format=package.format,
            device=options.device,
            half=package.quantization == "fp16",
            threads=options.threads,
            fixed_batch=None if package.batch.dynamic else package.batch.size,
        )
    return _open_tensorrt(package, path, name, options)


def _open_tensorrt(package: ModelPackage, path: Path, name: str, options: LoadOptions) -> Backend:
    from .tensorrt import TensorRTBackend

    return TensorRTBackend.from_package_file(path, package=package, name=name, options=options)
