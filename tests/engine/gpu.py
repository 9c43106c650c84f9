"""Skip helpers for tests that need an NVIDIA GPU: `@requires_gpu("tensorrt")` marks `gpu` and skips cleanly."""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


@functools.cache
def importable(module: str) -> bool:
    """Whether the module imports (installed, and its native libraries load)."""
    try:
        importlib.import_module(module)
    except (ImportError, OSError):
        return False
    return True


@functools.cache
def has_cuda() -> bool:
    """CuPy is installed and sees at least one CUDA device; never raises."""
    if not importable("cupy"):
        return False
    import cupy

    try:
        return cupy.cuda.runtime.getDeviceCount() > 0
    except cupy.cuda.runtime.CUDARuntimeError:
        return False


def gpu_skip_reason(*modules: str) -> str | None:
    """Why a GPU test cannot run here (a missing module or no CUDA device), or None."""
    missing = [module for module in modules if not importable(module)]
    if missing:
        return f"needs {', '.join(missing)} (not installed)"
    if not has_cuda():
        return "needs CuPy and a CUDA GPU (none found)"
    return None


def requires_gpu(*modules: str) -> Callable[[T], T]:
    """Mark a test `gpu` and skip it, with the reason, unless the modules and a CUDA GPU are present."""

    def mark(test: T) -> T:
        reason = gpu_skip_reason(*modules)
        return pytest.mark.gpu(pytest.mark.skipif(reason is not None, reason=reason or "")(test))

    return mark
