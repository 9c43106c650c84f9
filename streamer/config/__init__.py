"""Configuration: typed structs decoded from one TOML file."""

from .loader import checked_struct, configured, load_config
from .schema import (
    BatchingConfig,
    CallbackSinkConfig,
    Config,
    CustomStageConfig,
    FileSourceConfig,
    FilterStageConfig,
    JsonlSinkConfig,
    LavfiSourceConfig,
    ModelConfig,
    SinkConfig,
    SourceConfig,
    StageConfig,
    VideoSinkConfig,
)

__all__ = [
    "BatchingConfig",
    "CallbackSinkConfig",
    "Config",
    "CustomStageConfig",
    "FileSourceConfig",
    "FilterStageConfig",
    "JsonlSinkConfig",
    "LavfiSourceConfig",
    "ModelConfig",
    "SinkConfig",
    "SourceConfig",
    "StageConfig",
    "VideoSinkConfig",
    "checked_struct",
    "configured",
    "load_config",
]
