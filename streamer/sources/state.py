"""A source's life as a small state machine, and the backoff between its reconnects.

    connecting -> running -> reconnecting -> connecting -> ...
         |           |            |
         +-----------+------------+--> ended (the file ended, max_frames, or stopped)
                                  +--> failed (attempts used up, or an error no retry can fix)

    running <-> paused (by the admin API: a file waits where it is, a camera stays connected and
                        its frames are discarded)
"""

from __future__ import annotations

import enum
import random
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


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with a cap and jitter: attempt n (from 1) waits between half and all of
    min(max_s, initial_s * 2**(n-1)), so many cameras never retry in step."""

    initial_s: float = 0.5
    max_s: float = 10.0
    max_attempts: int = 0  # 0: try forever

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        ceiling = min(self.max_s, self.initial_s * 2 ** max(0, attempt - 1))
        return (rng or random).uniform(ceiling / 2, ceiling)

    def exhausted(self, attempt: int) -> bool:
        return self.max_attempts > 0 and attempt >= self.max_attempts
