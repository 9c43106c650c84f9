"""Sinks: where results go. Each has its own bounded queue and task."""

from __future__ import annotations

import msgspec

from ..config import schema
from ..errors import SinkError
from ..importing import import_target
from .base import Sink, SinkBase, accepts
from .callback import CallbackSink
from .jsonl import JsonlSink
from .video import VideoSink

__all__ = ["CallbackSink", "JsonlSink", "Sink", "SinkBase", "VideoSink", "accepts", "build_sink"]


def build_sink(config: schema.SinkConfig, index: int = 0) -> Sink:
    """The Sink object a config table describes."""
    sink = _build(config, index)
    sink.overflow = config.overflow  # type: ignore[attr-defined]
    return sink


def _build(config: schema.SinkConfig, index: int) -> Sink:
    common = {"sources": config.sources, "queue_size": config.queue_size}
    if isinstance(config, schema.JsonlSinkConfig):
        rotation = {"rotate_bytes": config.rotate_bytes, "rotate_seconds": config.rotate_seconds, "keep": config.keep}
        return JsonlSink(config.path, **rotation, kinds=config.kinds, **common)
    if isinstance(config, schema.SnapshotSinkConfig):
        from .snapshot import SnapshotSink

        return SnapshotSink(
            config.folder,
            classes=config.classes,
            min_confidence=config.min_confidence,
            min_interval_s=config.min_interval_s,
            annotate=config.annotate,
            quality=config.quality,
            **common,
        )
    if isinstance(config, schema.VideoSinkConfig):
        encoding = {"codec": config.codec, "crf": config.crf, "fps": config.fps}
        return VideoSink(config.path, **encoding, annotate=config.annotate, **common)
    if isinstance(config, schema.WebhookSinkConfig):
        from .webhook import WebhookSink

        return WebhookSink(**_own_fields(config), **common)
    if isinstance(config, schema.MqttSinkConfig):
        from .mqtt import MqttSink

        return MqttSink(**_own_fields(config), **common)
    if isinstance(config, schema.CallbackSinkConfig):
        function = import_target(config.function, f"$.sinks[{index}].function", error=SinkError)
        return CallbackSink(function, kinds=config.kinds, **common)
    raise TypeError(f"unknown sink config {type(config).__name__}")


def _own_fields(config: schema.SinkConfig) -> dict:
    """The table's keys minus those every sink shares (passed separately)."""
    fields = msgspec.structs.asdict(config)
    for shared in ("sources", "queue_size", "overflow"):
        fields.pop(shared)
    return fields
