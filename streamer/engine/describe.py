"""What loading would do, without loading: a model and its packages, one package, this machine.

`describe_model`, `describe_model_package` and `describe_compute_environment` return values
(`ModelDescription`, `PackageDescription`, `ComputeEnvironment`) to read fields from; the first two
render as the tables `streamer describe model` prints (`str()`), the machine as
`environment.render_environment` renders it. `AutoModel` offers the same three as static methods.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import anyio

from ..errors import NoCompatiblePackageError, ParameterError
from .cache import ModelCache
from .entities import LoadOptions, ModelDocument, ModelPackage, make_options
from .environment import describe_compute_environment
from .negotiation import Negotiation, negotiate_here, render_negotiation
from .resolve import resolve

__all__ = [
    "ModelDescription",
    "PackageDescription",
    "describe_compute_environment",
    "describe_model",
    "describe_model_async",
    "describe_model_package",
]


@dataclass(frozen=True)
class ModelDescription:
    """A model's document, what negotiation picks on this machine (None and a refusal when nothing
    fits), and which of its packages are complete in the cache."""

    document: ModelDocument
    negotiation: Negotiation | None
    refusal: str | None
    cached: frozenset[str]

    @property
    def chosen(self) -> ModelPackage | None:
        """The package a load with the same options would use here."""
        return self.negotiation.chosen if self.negotiation is not None else None

    def __str__(self) -> str:
        doc = self.document
        lines = _table(
            [
                ("model", doc.model_id),
                ("task", doc.task),
                ("architecture", doc.architecture),
                ("input size", "x".join(map(str, doc.input_size)) if doc.input_size else "from the file"),
                ("classes", _classes(doc.class_names)),
                ("dependencies", ", ".join(f"{d.name}={d.model_id}" for d in doc.dependencies) or "none"),
                ("license", doc.license or "unknown"),
                ("description", doc.description or "-"),
            ]
        )
        lines += ["", "packages:"] + [_package_line(p, p.package_id in self.cached) for p in doc.packages]
        lines += ["", render_negotiation(self.negotiation) if self.negotiation else f"no package fits: {self.refusal}"]
        return "\n".join(lines)


@dataclass(frozen=True)
class PackageDescription:
    """One package of a model, and whether its files are complete in the cache."""

    document: ModelDocument
    package: ModelPackage
    cached: bool

    def __str__(self) -> str:
        p = self.package
        rows = [
            ("model", self.document.model_id),
            ("package", p.package_id),
            ("backend", p.backend),
            ("format", p.format),
            ("quantization", p.quantization),
            ("batch", p.batch.describe()),
            ("requirements", _requirements(p)),
            ("trusted", "yes" if p.trusted else "no"),
            ("cached", "yes" if self.cached else "no"),
        ]
        files = [f"  {f.name}  {f.size if f.size is not None else '?'} bytes  sha256 {f.sha256 or 'none'}" for f in p.files]
        return "\n".join(_table(rows) + ["files:"] + files)


def describe_model(model_id: str, options: LoadOptions | None = None, **overrides: Any) -> ModelDescription:
    """The model's document, its packages, and what negotiation picks on this machine."""
    return anyio.run(functools.partial(describe_model_async, model_id, make_options(options, overrides)))


async def describe_model_async(model_id: str, options: LoadOptions) -> ModelDescription:
    document = await resolve(model_id, options)
    try:
        negotiation, refusal = await negotiate_here(document, options), None
    except NoCompatiblePackageError as exc:
        negotiation, refusal = None, str(exc)
    return ModelDescription(document, negotiation, refusal, _cached(document, options))


def describe_model_package(
    model_id: str, package_id: str, options: LoadOptions | None = None, **overrides: Any
) -> PackageDescription:
    """One package of the model by id (ParameterError naming the others when it has no such package)."""
    options = make_options(options, overrides)
    document = anyio.run(functools.partial(resolve, model_id, options))
    package = document.package(package_id)
    if package is None:
        known = ", ".join(p.package_id for p in document.packages)
        raise ParameterError(f"model {model_id!r} has no package {package_id!r} (packages: {known})")
    return PackageDescription(document, package, package_id in _cached(document, options))


def _cached(document: ModelDocument, options: LoadOptions) -> frozenset[str]:
    cache = ModelCache(options.cache_dir)
    return frozenset(p.package_id for p in document.packages if cache.is_complete(document.model_id, p))


def _table(rows: list[tuple[str, str]]) -> list[str]:
    width = max(len(key) for key, _ in rows)
    return [f"{key.ljust(width)}  {value}" for key, value in rows]


def _classes(names: list[str]) -> str:
    if not names:
        return "from the file"
    shown = ", ".join(names[:8])
    return f"{len(names)}: {shown}" + (", ..." if len(names) > 8 else "")


def _requirements(package: ModelPackage) -> str:
    r = package.requirements
    parts = [f"device {r.device}"]
    parts += [f"{label} {value}" for label, value in (
        ("onnx opset", r.onnx_opset),
        ("compute capability", r.cuda_compute_capability),
        ("tensorrt", r.tensorrt_version),
        ("torch", r.torch_version),
    ) if value]
    return ", ".join(parts)


def _package_line(package: ModelPackage, cached: bool) -> str:
    return (
        f"  {package.package_id:<28} {package.backend:<12} {package.format:<13} {package.quantization:<5} "
        f"{package.batch.describe():<16} {'cached' if cached else ''}"
    )
