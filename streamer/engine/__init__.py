"""The engine: find a model, pick how to run it on this machine, fetch it, and run it."""

from .auto_model import DEFAULT_MODEL, AutoModel
from .entities import ComputeEnvironment, LoadOptions, ModelDocument, ModelPackage
from .models.base import DetectionModel
from .pipelines import AutoModelPipeline, ModelPipeline

__all__ = [
    "DEFAULT_MODEL",
    "AutoModel",
    "AutoModelPipeline",
    "ComputeEnvironment",
    "DetectionModel",
    "LoadOptions",
    "ModelDocument",
    "ModelPackage",
    "ModelPipeline",
]
