"""The public entry points: convert an ONNX file or a model id to a PyTorch package, copy a package elsewhere."""

from __future__ import annotations

import functools
import shutil
from pathlib import Path
from typing import Literal

from ...errors import ModelNotFoundError, ParameterError
from ..cache import atomic_write, default_cache_root
from ..entities import LoadOptions, ModelDocument, ModelPackage
from ..backends.package import primary_file
from ..providers.local import MANIFEST
from .cached import FORMATS, cached_conversion, files_intact, link_or_copy

TorchFormat = Literal["torchscript", "torch-export"]


def convert_to_torch(
    source_onnx: str | Path,
    out_dir: str | Path | None = None,
    *,
    format: TorchFormat = "torchscript",
    document: ModelDocument | None = None,
    cache_dir: str | Path | None = None,
    architecture: str | None = None,
) -> Path:
    """The folder of a local model package holding `source_onnx` converted to `format` (`model.json` inside).

    `document` describes the source model (architecture, task, class names); a bare ONNX file is
    described from its own metadata, or with `architecture`. The conversion lives in the cache; with
    `out_dir`, the package is also copied there and that folder is returned.
    """
    if format not in FORMATS:
        raise ParameterError(f'format {format!r} is not "torchscript" or "torch-export"')
    source = Path(source_onnx)
    document = document or _describe_file(source, architecture)
    folder = cached_conversion(source, format, document, Path(cache_dir) if cache_dir else default_cache_root())
    return folder if out_dir is None else copy_package(folder, Path(out_dir))


async def convert_model(
    model_id_or_path: str, options: LoadOptions, *, format: TorchFormat = "torchscript", out_dir: str | None = None
) -> Path:
    """Resolve a model id or path, fetch its ONNX package, and convert it (what `streamer models convert` does)."""
    import anyio.to_thread

    from ..download import fetch
    from ..resolve import resolve

    document = await resolve(model_id_or_path, options)
    package = _onnx_package(document)
    files = await fetch(document, package, options)
    source = primary_file(package, files)
    convert = functools.partial(
        convert_to_torch, source, out_dir, format=format, document=document, cache_dir=options.cache_dir
    )
    return await anyio.to_thread.run_sync(convert)


def copy_package(folder: Path, out_dir: Path) -> Path:
    """Copy a converted package's folder to `out_dir` (its manifest last), unless it already holds it."""
    manifest = (folder / MANIFEST).read_bytes()
    if (out_dir / MANIFEST).is_file() and (out_dir / MANIFEST).read_bytes() == manifest and files_intact(out_dir):
        return out_dir
    copies: dict[tuple[int, int], Path] = {}  # the fp32 and fp16 packages share one file: copy it once
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name != MANIFEST:
            target = out_dir / path.relative_to(folder)
            identity = (path.stat().st_dev, path.stat().st_ino)
            if identity in copies:
                link_or_copy(copies[identity], target)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
                copies[identity] = target
    atomic_write(out_dir / MANIFEST, manifest)
    return out_dir


def _onnx_package(document: ModelDocument) -> ModelPackage:
    found = [package for package in document.packages if package.format == "onnx"]
    if not found:
        formats = ", ".join(sorted({package.format for package in document.packages})) or "none"
        raise ParameterError(f"model {document.model_id!r} has no ONNX package to convert (formats: {formats})")
    return next((package for package in found if package.quantization == "fp32"), found[0])


def _describe_file(source: Path, architecture: str | None) -> ModelDocument:
    from ..resolve import document_for_file

    if not source.is_file():
        raise ModelNotFoundError(f"no ONNX file at {source}")
    return document_for_file(source, LoadOptions(architecture=architecture))
