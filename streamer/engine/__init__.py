"""The engine: find a model, pick how to run it, and run it."""

from .auto_model import DEFAULT_MODEL, AutoModel
from .models.base import DetectionModel

__all__ = ["DEFAULT_MODEL", "AutoModel", "DetectionModel"]
