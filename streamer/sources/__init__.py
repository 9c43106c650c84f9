"""Video sources: each decodes in its own thread into its own bounded queue."""

from ..config.schema import FileSourceConfig, SourceConfig
from .av_source import AvSource
from .base import Source
from .queue import FrameQueue
from .state import SourceEvent, SourceState, StateChange
from .stats import SourceStats

__all__ = [
    "AvSource",
    "FrameQueue",
    "Source",
    "SourceEvent",
    "SourceState",
    "SourceStats",
    "StateChange",
    "build_source",
    "tolerates_damage",
]


def build_source(config: SourceConfig, start_after: tuple[int, float | None] | None = None) -> Source:
    """The Source object a config table describes; a file source may resume after (index, pts)."""
    return AvSource(config, start_after=start_after)


def tolerates_damage(config: SourceConfig) -> bool:
    """Whether a damaged file (decode errors, frames missing) still counts as a success: never for
    a file unless its config says so; live sources are never checked for it."""
    return isinstance(config, FileSourceConfig) and config.tolerate_damage
