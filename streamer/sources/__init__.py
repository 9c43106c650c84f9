"""Video sources: each decodes in its own thread into its own bounded queue."""

from ..config.schema import FileSource, LavfiSource, SourceConfig
from .av_source import AvSource
from .base import Source
from .queue import FrameQueue

__all__ = ["AvSource", "FrameQueue", "Source", "build_source", "default_policy"]


def build_source(config: SourceConfig) -> Source:
    """The Source object a config table describes."""
    assert config.id is not None, "load_config gives every source an id"
    if isinstance(config, FileSource):
        return AvSource(
            config.id, config.path, realtime=config.realtime, loop=config.loop, max_frames=config.max_frames
        )
    if isinstance(config, LavfiSource):
        return AvSource(
            config.id, config.graph, format="lavfi", live=True, realtime=config.realtime, max_frames=config.max_frames
        )
    raise TypeError(f"unknown source config {type(config).__name__}")


def default_policy(config: SourceConfig) -> str:
    """`block` for files (lose nothing), `latest` for live sources (never fall behind)."""
    if config.policy is not None:
        return config.policy
    return "latest" if isinstance(config, LavfiSource) else "block"
