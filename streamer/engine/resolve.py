"""Step one of loading: turn a model id or a path into a ModelDocument."""

from __future__ import annotations

import difflib
import hashlib
from pathlib import Path

import anyio

from ..errors import ModelFormatError, ModelNotFoundError, UnknownArchitectureError
from .entities import BatchProfile, FileSpec, LoadOptions, ModelDocument, ModelPackage
from .models import REGISTRY, architectures
from .providers import WeightsProvider, default_providers
from .providers.local import MANIFEST, read_model_folder

NOT_ONNX_HINT = "check the path, or export the model to ONNX again (the file may be cut short or be something else)"
# suffix -> (backend, format)
FILE_KINDS = {
    ".onnx": ("onnxruntime", "onnx"),
    ".pt": ("torch", "torchscript"),
    ".torchscript": ("torch", "torchscript"),
    ".ts": ("torch", "torchscript"),
    ".pt2": ("torch", "torch-export"),
    ".engine": ("tensorrt", "trt-plan"),
    ".plan": ("tensorrt", "trt-plan"),
}


async def resolve(
    model_id_or_path: str, options: LoadOptions, providers: list[WeightsProvider] | None = None
) -> ModelDocument:
    local = await anyio.to_thread.run_sync(local_document, Path(model_id_or_path), options)
    if local is not None:
        return local
    if options.offline and (cached := _cached_document(model_id_or_path, options)) is not None:
        return cached
    asked = providers if providers is not None else default_providers(options)
    if options.offline:
        asked = [provider for provider in asked if provider.name != "registry"]
    for provider in asked:
        document = await provider.get_model(model_id_or_path)
        if document is not None:
            return document
    names = ", ".join(provider.name for provider in asked)
    if options.offline:
        names += "; offline, so the registry was not asked: run `streamer models pull ID` while online"
    raise ModelNotFoundError(
        f"model {model_id_or_path!r}: no such file or model folder, and no provider knows that id "
        f"(asked: {names}){_did_you_mean(model_id_or_path)}; `streamer models list` shows cached models, "
        "`streamer describe model ID` one model"
    )


def _did_you_mean(model_id: str) -> str:
    """", did you mean 'centerface'?" for an id close to one of the embedded models', else ""."""
    from .providers.embedded import EMBEDDED

    close = difflib.get_close_matches(model_id, list(EMBEDDED), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def local_document(path: Path, options: LoadOptions) -> ModelDocument | None:
    """The document of a model folder or a model file at `path`, or None when there is neither
    (blocking: it reads the file and, for ONNX, parses it)."""
    if path.is_dir() and (path / MANIFEST).is_file():
        return read_model_folder(path)
    if path.is_file():
        return document_for_file(path, options)
    return None


def _cached_document(model_id: str, options: LoadOptions) -> ModelDocument | None:
    from .cache import ModelCache

    return ModelCache(options.cache_dir).load_document(model_id)


def document_for_file(path: Path, options: LoadOptions) -> ModelDocument:
    """A one-package document for a bare model file given by path."""
    backend, form = FILE_KINDS.get(path.suffix.lower(), ("onnxruntime", "onnx"))
    data = path.read_bytes()
    metadata, batch = _onnx_facts(data, path) if form == "onnx" else ({}, BatchProfile())
    architecture, task = _family_from(metadata, path, options.architecture)
    package = ModelPackage(
        package_id=f"file-{form}",
        backend=backend,  # type: ignore[arg-type]
        format=form,  # type: ignore[arg-type]
        batch=batch,
        files=[FileSpec(name=path.name, url=path.resolve().as_uri(), sha256=hashlib.sha256(data).hexdigest())],
    )
    return ModelDocument(
        model_id=str(path),
        task=task,
        architecture=architecture,
        packages=[package],
    )


def _onnx_facts(data: bytes, path: Path) -> tuple[dict[str, str], BatchProfile]:
    """The file's metadata and batch profile, read without running it (and without importing onnx)."""
    from .onnx_proto import read_onnx_facts

    try:
        facts = read_onnx_facts(data)
    except ValueError as exc:
        raise ModelFormatError(f"model {str(path)!r}: not an ONNX model ({exc}); {NOT_ONNX_HINT}") from exc
    if not facts.nodes:
        raise ModelFormatError(f"model {str(path)!r}: not an ONNX model (no graph); {NOT_ONNX_HINT}")
    size = facts.first_input_dims[0] if facts.first_input_dims else None
    return facts.metadata, BatchProfile(dynamic=False, size=size) if size and size > 0 else BatchProfile()


def _family_from(metadata: dict[str, str], path: Path, architecture: str | None) -> tuple[str, str]:
    """(architecture, task): the file's own metadata says both for Ultralytics exports; a given
    architecture overrides it (with that architecture's default task, unless the file's family is the
    one given)."""
    from .models.yolo_metadata import ultralytics_family

    found = ultralytics_family(metadata)
    if architecture is None and found is None:
        raise UnknownArchitectureError(
            f"model {str(path)!r}: cannot tell its architecture from the file's metadata; set `architecture` "
            f"in [model] or pass architecture=... (known: {', '.join(architectures())})"
        )
    if found is not None and architecture in (None, found[0]):
        return found
    assert architecture is not None
    return architecture, _first_task(architecture)


def _first_task(architecture: str) -> str:
    """The task registered first for the architecture (`yolo`: detection, whatever else it has)."""
    return next((task for known, task, _ in REGISTRY if known == architecture), "object-detection")
