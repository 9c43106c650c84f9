"""AutoModel: a model id or a path in, a ready model out.

Loading is four small steps: resolve (id or path -> ModelDocument), negotiate (pick the package that
fits this machine and the request), fetch (files into the cache, checked), instantiate (the family
class for architecture x task x backend around its backend). Dependencies load first, one level deep.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import anyio
import msgspec

from ..errors import DependencyModelError, ParameterError, StreamerError
from .entities import ComputeEnvironment, LoadOptions, ModelDocument, ProbeScope
from .models import model_class
from .models.base import DetectionModel
from .resolve import resolve

if TYPE_CHECKING:
    from .negotiation import Negotiation

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


def make_options(options: LoadOptions | None, overrides: dict[str, Any]) -> LoadOptions:
    """One checked LoadOptions from a struct and/or keyword arguments (bad ones: ParameterError)."""
    merged = {**(msgspec.to_builtins(options) if options is not None else {}), **overrides}
    try:
        return msgspec.convert(merged, type=LoadOptions)
    except msgspec.ValidationError as exc:
        raise ParameterError(f"invalid load options: {exc}") from exc


@functools.lru_cache(maxsize=None)
def compute_environment(scope: ProbeScope = ProbeScope()) -> ComputeEnvironment:
    """This machine as far as `scope` asks, probed once per process and scope (it may take seconds)."""
    from .environment import describe_compute_environment

    return describe_compute_environment(scope)


async def negotiate_here(document: ModelDocument, options: LoadOptions) -> Negotiation:
    """Negotiate `document` for this machine, probing only what it needs, in a worker thread."""
    return await anyio.to_thread.run_sync(_negotiate_here, document, options)


def _negotiate_here(document: ModelDocument, options: LoadOptions) -> Negotiation:
    from .negotiation import negotiate, probe_scope

    return negotiate(document, options, compute_environment(probe_scope(document, options)))


async def load_model(model_id_or_path: str, options: LoadOptions, *, is_dependency: bool = False) -> DetectionModel:
    document = await resolve(model_id_or_path, options)
    if is_dependency and document.dependencies:
        raise DependencyModelError(
            f"model {document.model_id!r} is a dependency and has dependencies of its own; only one level is allowed"
        )
    package = (await negotiate_here(document, options)).chosen
    files = await fetch(document, package, options)
    dependencies = {} if is_dependency else await load_dependencies(document, options)
    family = model_class(document.architecture, document.task, package.backend, f"model {document.model_id!r}")
    return await anyio.to_thread.run_sync(family.load, document, package, files, options, dependencies)


async def pull(model_id_or_path: str, options: LoadOptions) -> tuple[ModelDocument, Any, dict[str, Any]]:
    """Resolve, negotiate and fetch without loading: what `streamer models pull` does."""
    document = await resolve(model_id_or_path, options)
    package = (await negotiate_here(document, options)).chosen
    return document, package, await fetch(document, package, options)


async def fetch(document: ModelDocument, package: Any, options: LoadOptions) -> dict[str, Any]:
    from .cache import ModelCache
    from .download import fetch_package

    return await fetch_package(
        document,
        package,
        ModelCache(options.cache_dir),
        offline=options.offline,
        allow_untrusted=options.allow_untrusted_packages,
        headers=_registry_headers(options),
    )


def _registry_headers(options: LoadOptions) -> Any:
    """The registry's credentials, sent only to the registry's own origin (None: no registry)."""
    from .providers import registry_provider

    registry = registry_provider(options)
    return registry.headers_for if registry is not None else None  # type: ignore[attr-defined]


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
