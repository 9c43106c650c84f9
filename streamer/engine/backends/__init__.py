"""Backends run a model file on a device; each imports its library only when instantiated."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType

import numpy as np

from ...errors import MissingDependencyError, ParameterError


def import_optional(module: str, extra: str, what: str) -> ModuleType:
    """Import an optional library, or raise MissingDependencyError naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{what} needs `{module}`, which is not installed: pip install 'streamer[{extra}]'"
        ) from exc
    except OSError as exc:  # installed, but a shared library it links against is missing
        raise MissingDependencyError(
            f"{what} needs `{module}`, which is installed but cannot load its native libraries ({exc}): "
            f"reinstall it with pip install 'streamer[{extra}]' and check the CUDA libraries"
        ) from exc


def parse_device(device: str, name: str = "device") -> tuple[str, int]:
    """Split "cpu", "cuda" or "cuda:N" into (kind, index); `name` says whose device it is in errors."""
    kind, _, index = device.partition(":")
    if kind == "cpu" and not index:
        return "cpu", 0
    if kind == "cuda" and (not index or index.isdigit()):
        return "cuda", int(index or 0)
    raise ParameterError(f'{name}: device {device!r} is not one of "cpu", "cuda" or "cuda:N"')


def run_in_fixed_batches(
    run_one: Callable[[np.ndarray], list[np.ndarray]], batch: np.ndarray, size: int | None
) -> list[np.ndarray]:
    """Run a model that takes exactly `size` images per call: chunks of `size`, the last one padded."""
    if size is None or len(batch) == size:
        return run_one(batch)
    chunks = [run_one(pad_batch(batch[i : i + size], size)) for i in range(0, len(batch), size)]
    return [np.concatenate(parts)[: len(batch)] for parts in zip(*chunks)]


def pad_batch(chunk: np.ndarray, size: int) -> np.ndarray:
    """The chunk itself when it has `size` items, else a zero-padded copy."""
    if len(chunk) == size:
        return chunk
    padded = np.zeros((size, *chunk.shape[1:]), chunk.dtype)
    padded[: len(chunk)] = chunk
    return padded
