"""A stand-in `torchvision` for peers whose venv holds only PyPI's CUDA build of it (standard library only).

PyPI's torchvision wheels are CUDA builds; their compiled ops need libc10_cuda.so, which the CPU
torch wheel lacks, so `import torchvision` fails ("operator torchvision::nms does not exist"), and
no CPU build can be had here. Both peers import it on the way to the code measured here without
calling it there: Ultralytics imports it to pick torchvision's NMS (the stand-in's `ops.nms` is then
Ultralytics' own `TorchNMS.nms`, what it runs when torchvision is absent), Roboflow `inference`
imports a few names from `torchvision.io` for Workflows. Every other attribute of the stand-in is
a placeholder that raises if called. The real module is tried first, in a child process.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import subprocess
import sys
import types
from typing import Any, Callable


class _Placeholder:
    """Any attribute of the stand-in: fine to import, subclass or look into; raises when called."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{self._name} is part of a torchvision stand-in (no CPU torchvision here)")

    def __getattr__(self, attribute: str) -> _Placeholder:
        return _Placeholder(f"{self._name}.{attribute}")

    def __mro_entries__(self, bases: tuple[Any, ...]) -> tuple[type, ...]:
        return (object,)


class _StandInModule(types.ModuleType):
    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        return _Placeholder(f"{self.__name__}.{attribute}")


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers every `torchvision` and `torchvision.*` import with a stand-in module."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if name == "torchvision" or name.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = _StandInModule(spec.name)
        module.__path__ = []
        module.__version__ = "stand-in"
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        pass


def real_import_error() -> str | None:
    """None if the real torchvision imports (tried in a child process), else its last error line."""
    probe = subprocess.run([sys.executable, "-c", "import torchvision"], capture_output=True, text=True)
    if probe.returncode == 0:
        return None
    lines = [line for line in probe.stderr.splitlines() if line.strip()]
    return lines[-1] if lines else f"exit code {probe.returncode}"


def use_if_needed(nms: Callable[..., Any] | None = None) -> str:
    """Install the stand-in when the real torchvision does not import; says which one is in use."""
    error = real_import_error()
    if error is None:
        return "torchvision (real)"
    sys.meta_path.insert(0, _Finder())
    if nms is not None:
        import torchvision.ops

        torchvision.ops.nms = nms
    return f"torchvision stand-in (the real one fails: {error})"
