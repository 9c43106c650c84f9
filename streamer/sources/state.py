"""The states a source reports, and its state changes as the pipeline publishes them. The machine
that moves a source between them, with every transition, is drawn in av_source.py."""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field


class SourceState(str, enum.Enum):
    CONNECTING = "connecting"
    RUNNING = "running"
    RECONNECTING = "reconnecting"
    PAUSED = "paused"
    ENDED = "ended"
    FAILED = "failed"

    @property
    def final(self) -> bool:
        return self in (SourceState.ENDED, SourceState.FAILED)


@dataclass(frozen=True)
class StateChange:
    """What a source reports besides frames: its new state, and why (credentials already masked)."""

    state: SourceState
    reason: str | None = None
    attempt: int = 0
    retry_in_s: float | None = None


@dataclass(frozen=True)
class SourceEvent:
    """A state change as the pipeline publishes it: which source, from what, to what, when."""

    source_id: str
    previous: SourceState | None
    state: SourceState
    reason: str | None
    attempt: int
    wall_time: float = field(default_factory=time.time)
