"""AutoModel: a model id or a path in, a ready model out.

Loading is four steps, each a call into its own module (`load_model` reads as that list):

    resolve      resolve.py      id or path -> ModelDocument
    negotiate    negotiation.py  the package that fits this machine and the request
    fetch        download.py     its files into the cache, checked
    instantiate  loading.py      the family class for architecture x task x backend around its backend

Dependencies load first, one level deep. The describe methods say what loading would do without
loading: a model, one of its packages, this machine.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import anyio
import msgspec

from ..errors import DependencyModelError, StreamerError
from . import describe
from .download import fetch
from .entities import ComputeEnvironment, LoadOptions, ModelDocument, ModelPackage, ProbeScope, make_options
from .loading import instantiate
from .models.base import DetectionModel
from .negotiation import negotiate_here
from .resolve import resolve

__all__ = ["DEFAULT_MODEL", "AutoModel", "load_model", "make_options", "pull"]

DEFAULT_MODEL = "centerface"

# Options a dependency inherits from the model that needs it (its own params override them).
FORWARDED_TO_DEPENDENCIES = (
    "device",
    "threads",
    "disabled_backends",
    "onnx_execution_providers",
    "allow_untrusted_packages",
    "cache_dir",
    "offline",
    "registry_url",
    "registry_token",
)


class AutoModel:
    """`await AutoModel.load("centerface")`, or `AutoModel.from_pretrained(...)` from code that is not async.

    Options are the fields of `LoadOptions` (backend, device, batch_size, quantization, ...), given as
    keyword arguments or as one `options=` struct.
    """

    @staticmethod
    async def load(
        model_id_or_path: str = DEFAULT_MODEL, options: LoadOptions | None = None, **overrides: Any
    ) -> DetectionModel:
        return await load_model(model_id_or_path, make_options(options, overrides))

    @staticmethod
    def from_pretrained(
        model_id_or_path: str = DEFAULT_MODEL, options: LoadOptions | None = None, **overrides: Any
    ) -> DetectionModel:
        return anyio.run(functools.partial(AutoModel.load, model_id_or_path, options, **overrides))

    @staticmethod
    def describe_model(
        model_id_or_path: str = DEFAULT_MODEL, options: LoadOptions | None = None, **overrides: Any
    ) -> describe.ModelDescription:
        """The model's document, its packages, and what negotiation picks (or why nothing fits) here."""
        return describe.describe_model(model_id_or_path, options, **overrides)

    @staticmethod
    def describe_model_package(
        model_id_or_path: str, package_id: str, options: LoadOptions | None = None, **overrides: Any
    ) -> describe.PackageDescription:
        """One package of the model: backend, format, batch, requirements, files, whether it is cached."""
        return describe.describe_model_package(model_id_or_path, package_id, options, **overrides)

    @staticmethod
    def describe_compute_environment(scope: ProbeScope = ProbeScope()) -> ComputeEnvironment:
        """This machine as negotiation sees it: backends, GPUs and versions (may take seconds)."""
        return describe.describe_compute_environment(scope)


async def load_model(model_id_or_path: str, options: LoadOptions, *, is_dependency: bool = False) -> DetectionModel:
    document = await resolve(model_id_or_path, options)
    if is_dependency and document.dependencies:
        raise DependencyModelError(
            f"model {document.model_id!r} is a dependency and has dependencies of its own; only one level is allowed"
        )
    package = (await negotiate_here(document, options)).chosen
    files = await fetch(document, package, options)
    dependencies = {} if is_dependency else await load_dependencies(document, options)
    return await instantiate(document, package, files, options, dependencies)


async def pull(model_id_or_path: str, options: LoadOptions) -> tuple[ModelDocument, ModelPackage, dict[str, Path]]:
    """Resolve, negotiate and fetch without instantiating: what `streamer models pull` does."""
    document = await resolve(model_id_or_path, options)
    package = (await negotiate_here(document, options)).chosen
    return document, package, await fetch(document, package, options)


async def load_dependencies(document: ModelDocument, options: LoadOptions) -> dict[str, DetectionModel]:
    """Each declared dependency, loaded with the parent's options overridden by its own params."""
    loaded: dict[str, DetectionModel] = {}
    parent = msgspec.to_builtins(options)
    shared = {key: parent[key] for key in FORWARDED_TO_DEPENDENCIES if key in parent}
    for dependency in document.dependencies:
        params = dict(options.dependency_models_params.get(dependency.name, {}))
        model_id = params.pop("model_id_or_path", dependency.model_id)
        try:
            loaded[dependency.name] = await load_model(
                model_id, make_options(None, {**shared, **params}), is_dependency=True
            )
        except StreamerError as exc:
            raise DependencyModelError(
                f"model {document.model_id!r}: its dependency {dependency.name!r} ({model_id!r}) failed to load: {exc}"
            ) from exc
    return loaded
