"""Configuration: typed structs decoded from one TOML file."""

from .loader import load_config
from .schema import (
    BatchingConfig,
    CallbackSink,
    Config,
    CustomStage,
    FileSource,
    FilterStage,
    JsonlSink,
    LavfiSource,
    ModelConfig,
    SinkConfig,
    SourceConfig,
    StageConfig,
    VideoSink,
)

__all__ = [
    "BatchingConfig",
    "CallbackSink",
    "Config",
    "CustomStage",
    "FileSource",
    "FilterStage",
    "JsonlSink",
    "LavfiSource",
    "ModelConfig",
    "SinkConfig",
    "SourceConfig",
    "StageConfig",
    "VideoSink",
    "load_config",
]
