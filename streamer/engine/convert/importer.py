"""onnx2torch imported, even where torchvision is not installed, and the ops it cannot convert refused."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
import types
from collections.abc import Iterator
from typing import Any

from ...errors import MissingDependencyError, ModelFormatError
from ...importing import import_optional

TORCHVISION_OPS = ("NonMaxSuppression", "RoiAlign")  # the only onnx2torch converters that call torchvision
WHAT = "converting ONNX models to PyTorch"
INSTALL_HINT = "pip install 'streamer[convert]' (to keep your torch build: pip install --no-deps onnx2torch)"


def import_onnx2torch() -> types.ModuleType:
    """onnx2torch, imported even where torchvision is not installed.

    onnx2torch imports torchvision at import time for two converters only (NonMaxSuppression and
    RoiAlign). Without torchvision, those imports see a placeholder for the duration of the import and
    nothing else does: it leaves `sys.modules` right after, and `check_ops` refuses graphs with either
    op before any converter runs.
    """
    import_optional("torch", extra="torch", what=WHAT)
    if importlib.util.find_spec("onnx2torch") is None:
        raise MissingDependencyError(f"{WHAT} needs `onnx2torch`, which is not installed: {INSTALL_HINT}")
    if "onnx2torch" in sys.modules:
        return sys.modules["onnx2torch"]
    if importlib.util.find_spec("torchvision") is None:
        with _torchvision_placeholder():
            return importlib.import_module("onnx2torch")
    try:
        return importlib.import_module("onnx2torch")
    except Exception as exc:  # a torchvision built for another torch fails as it registers its operators
        raise MissingDependencyError(
            f"{WHAT}: onnx2torch is installed but fails to import ({gist(exc)}); it imports torchvision, "
            "and a torchvision built for another torch is the usual cause: install the one matching your torch, "
            "or uninstall torchvision (onnx2torch needs it only for NonMaxSuppression and RoiAlign)"
        ) from exc


@contextlib.contextmanager
def _torchvision_placeholder() -> Iterator[None]:
    """`torchvision` and `torchvision.ops` in `sys.modules` for the block only; calling into them raises."""

    def missing(attribute: str) -> Any:
        if attribute.startswith("__"):
            raise AttributeError(attribute)

        def call(*args: Any, **kwargs: Any) -> Any:
            raise MissingDependencyError(f"torchvision.ops.{attribute} was called, but torchvision is not installed")

        return call

    ops = types.ModuleType("torchvision.ops", "placeholder: torchvision is not installed")
    ops.__getattr__ = missing  # type: ignore[method-assign]
    placeholder = types.ModuleType("torchvision", "placeholder: torchvision is not installed")
    placeholder.ops = ops  # type: ignore[attr-defined]
    added = {"torchvision": placeholder, "torchvision.ops": ops}
    sys.modules.update(added)
    try:
        yield
    finally:
        for module_name, module in added.items():
            if sys.modules.get(module_name) is module:
                del sys.modules[module_name]


def check_ops(model: Any, name: str) -> None:
    """ModelFormatError naming every op onnx2torch has no converter for (MissingDependencyError: torchvision's)."""
    from onnx2torch.node_converters import get_converter

    opsets = {opset.domain or "": opset.version for opset in model.opset_import}
    missing: set[str] = set()
    for node in model.graph.node:
        try:
            get_converter(operation_type=node.op_type, version=opsets.get(node.domain or "", 1), domain=node.domain)
        except NotImplementedError:
            missing.add(node.op_type if not node.domain else f"{node.domain}.{node.op_type}")
    if missing:
        raise ModelFormatError(f"{name}: onnx2torch cannot convert its op(s) {', '.join(sorted(missing))}")
    needs_torchvision = sorted({node.op_type for node in model.graph.node if node.op_type in TORCHVISION_OPS})
    if needs_torchvision and importlib.util.find_spec("torchvision") is None:
        raise MissingDependencyError(
            f"{name}: onnx2torch converts {', '.join(needs_torchvision)} with torchvision, which is not installed: "
            "install the torchvision build that matches your torch"
        )


def gist(exc: BaseException) -> str:
    """The error's gist: its first line, or the last of a TorchScript interpreter's traceback."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    return lines[-1] if lines[0].startswith("The following operation failed") else lines[0]
