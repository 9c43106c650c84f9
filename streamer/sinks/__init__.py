"""Sinks: where results go. Each has its own bounded queue and task."""

from __future__ import annotations

from ..config import schema
from ..errors import SinkError
from ..importing import import_target
from .base import Sink, accepts
from .callback import CallbackSink
from .jsonl import JsonlSink
from .video import VideoSink

__all__ = ["CallbackSink", "JsonlSink", "Sink", "VideoSink", "accepts", "build_sink"]


def build_sink(config: schema.SinkConfig, index: int = 0, *, resume: bool = False) -> Sink:
    """The Sink object a config table describes; `resume`: a restarted run (file sinks continue their files)."""
    if isinstance(config, schema.JsonlSinkConfig):
        return JsonlSink(config, resume=resume)
    if isinstance(config, schema.VideoSinkConfig):
        return VideoSink(config, resume=resume)
    if isinstance(config, schema.SnapshotSinkConfig):
        from .snapshot import SnapshotSink

        return SnapshotSink(config)
    if isinstance(config, schema.WebhookSinkConfig):
        from .webhook import WebhookSink

        return WebhookSink(config)
    if isinstance(config, schema.MqttSinkConfig):
        from .mqtt import MqttSink

        return MqttSink(config)
    if isinstance(config, schema.CallbackSinkConfig):
        function = import_target(config.function, f"$.sinks[{index}].function", error=SinkError)
        return CallbackSink(function, config)
    raise TypeError(f"unknown sink config {type(config).__name__}")
