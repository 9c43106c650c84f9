"""Model families: pre- and post-processing per architecture, imported lazily by name."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ...errors import UnknownArchitectureError

if TYPE_CHECKING:
    from .base import DetectionModel

# architecture -> "module:class" (imported only when that architecture is loaded)
ARCHITECTURES: dict[str, str] = {
    "centerface": "streamer.engine.models.centerface:CenterFace",
    "yolo": "streamer.engine.models.yolo:UltralyticsYolo",
}


def model_class(architecture: str, what: str) -> type[DetectionModel]:
    try:
        target = ARCHITECTURES[architecture]
    except KeyError:
        known = ", ".join(sorted(ARCHITECTURES))
        raise UnknownArchitectureError(f"{what}: unknown architecture {architecture!r} (known: {known})") from None
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)
