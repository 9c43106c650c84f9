"""The engine: find a model, pick how to run it on this machine, fetch it, and run it."""

from .auto_model import DEFAULT_MODEL, AutoModel
from .describe import (
    ModelDescription,
    PackageDescription,
    describe_compute_environment,
    describe_model,
    describe_model_package,
)
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
    "ModelDescription",
    "ModelDocument",
    "ModelPackage",
    "ModelPipeline",
    "PackageDescription",
    "describe_compute_environment",
    "describe_model",
    "describe_model_package",
]
