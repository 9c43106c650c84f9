"""Import user code named as `module:function` or `path/to/file.py:function`, and optional libraries."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from .errors import MissingDependencyError, StageError


def import_target(spec: str, what: str, error: type[Exception] = StageError) -> Callable[..., Any]:
    """The callable `spec` names; modules are looked up from the working directory too."""
    module_name, sep, attribute = spec.rpartition(":")
    if not sep or not module_name or not attribute:
        raise error(f"{what}: {spec!r} is not of the form 'module:function' or 'file.py:function'")
    try:
        module = _load_module(module_name)
        target = getattr(module, attribute)
    except (ImportError, AttributeError, OSError, SyntaxError) as exc:
        raise error(f"{what}: cannot import {spec!r}: {exc}") from exc
    if not callable(target):
        raise error(f"{what}: {spec!r} is not callable")
    return target


def _load_module(name: str) -> Any:
    if name.endswith(".py"):
        path = Path(name).resolve()
        spec = importlib.util.spec_from_file_location(path.stem, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"no Python file at {path}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    return importlib.import_module(name)


def import_optional(module: str, extra: str, what: str, *, install: str | None = None) -> ModuleType:
    """Import an optional library, or raise MissingDependencyError naming what to install: the extra
    (`pip install 'streamer[extra]'`), or `install` for a library no extra of streamer's brings."""
    command = install or f"pip install 'streamer[{extra}]'"
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(f"{what} needs `{module}`, which is not installed: {command}") from exc
    except OSError as exc:  # installed, but a shared library it links against is missing
        raise MissingDependencyError(
            f"{what} needs `{module}`, which is installed but cannot load its native libraries ({exc}): "
            f"reinstall it with {command} and check the CUDA libraries"
        ) from exc
