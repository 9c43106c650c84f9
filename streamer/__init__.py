"""streamer: run computer-vision models on live video.

    async with streamer.open("config.toml") as stream:
        async for result in stream:
            print(result.source_id, result.frame_index, len(result.detections))
"""

from .api import run
from .config import Config, load_config
from .engine import (
    AutoModel,
    AutoModelPipeline,
    ComputeEnvironment,
    DetectionModel,
    LoadOptions,
    ModelDescription,
    PackageDescription,
    describe_compute_environment,
    describe_model,
    describe_model_package,
)
from .errors import (
    ConfigError,
    ModelError,
    SinkError,
    SourceError,
    StageError,
    StreamerError,
)
from .frames import Detections, Frame, ModelInfo, Result
from .interop import from_supervision, to_supervision, to_supervision_keypoints
from .pipeline import Stream, Summary, open
from .sinks import CallbackSink, JsonlSink, VideoSink
from .sources import SourceEvent, SourceState

__version__ = "0.1.0"

__all__ = [
    "AutoModel",
    "AutoModelPipeline",
    "CallbackSink",
    "ComputeEnvironment",
    "Config",
    "ConfigError",
    "DetectionModel",
    "Detections",
    "Frame",
    "JsonlSink",
    "LoadOptions",
    "ModelError",
    "ModelDescription",
    "ModelInfo",
    "PackageDescription",
    "Result",
    "SinkError",
    "SourceEvent",
    "SourceState",
    "SourceError",
    "StageError",
    "Stream",
    "StreamerError",
    "Summary",
    "VideoSink",
    "__version__",
    "describe_compute_environment",
    "describe_model",
    "describe_model_package",
    "from_supervision",
    "load_config",
    "open",
    "run",
    "to_supervision",
    "to_supervision_keypoints",
]
