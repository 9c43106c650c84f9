"""Step four of loading: the family class for architecture x task x backend, built on its fetched files."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Mapping

import anyio

from .backends.package import primary_file
from .cache import file_sha256
from .entities import LoadOptions, ModelDocument, ModelPackage
from .models import model_class
from .models.base import DetectionModel


async def instantiate(
    document: ModelDocument,
    package: ModelPackage,
    files: Mapping[str, Path],
    options: LoadOptions,
    dependencies: Mapping[str, DetectionModel],
) -> DetectionModel:
    """The ready model: its family opens the package's backend and wraps it (in a worker thread);
    its `info.files` names each file of the package with its sha256."""
    family = model_class(document.architecture, document.task, package.backend, f"model {document.model_id!r}")

    def load() -> DetectionModel:
        model = family.load(document, package, files, options, dependencies)
        model.info = dataclasses.replace(model.info, files=file_checksums(package, files, model.info.sha256))
        return model

    return await anyio.to_thread.run_sync(load)


def file_checksums(package: ModelPackage, files: Mapping[str, Path], primary_sha256: str) -> tuple[tuple[str, str], ...]:
    """(name, sha256) of each file of the package: as the package declares it (downloads were
    checked against it), else hashed here (the model file's own is known already: `primary_sha256`)."""
    primary = primary_file(package, files)

    def sha256(name: str, declared: str | None) -> str:
        return declared or (primary_sha256 if files[name] == primary else file_sha256(files[name]))

    return tuple((spec.name, sha256(spec.name, spec.sha256)) for spec in package.files)
