"""Exponential backoff with a cap and jitter: the one used by reconnecting sources, sinks and downloads."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Attempt n (from 1) waits between half and all of min(max_s, initial_s * 2**(n-1)), so many
    cameras (or many downloads) never retry in step; `max_attempts` 0 means try forever."""

    initial_s: float = 0.5
    max_s: float = 10.0
    max_attempts: int = 0

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        ceiling = min(self.max_s, self.initial_s * 2 ** max(0, attempt - 1))
        return (rng or random).uniform(ceiling / 2, ceiling)

    def exhausted(self, attempt: int) -> bool:
        return self.max_attempts > 0 and attempt >= self.max_attempts
