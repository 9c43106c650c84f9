"""Step four of loading: the family class for architecture x task x backend, built on its fetched files."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import anyio

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
    """The ready model: its family opens the package's backend and wraps it (in a worker thread)."""
    family = model_class(document.architecture, document.task, package.backend, f"model {document.model_id!r}")
    return await anyio.to_thread.run_sync(family.load, document, package, files, options, dependencies)
