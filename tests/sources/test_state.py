"""Backoff between reconnects, and credentials masked in every text."""

from __future__ import annotations

import random

from streamer.sources.state import Backoff, SourceState


def test_backoff_grows_exponentially_with_jitter_up_to_its_cap():
    backoff = Backoff(initial_s=0.5, max_s=4.0)
    rng = random.Random(1)

    delays = [[backoff.delay(attempt, rng) for _ in range(50)] for attempt in range(1, 7)]

    for attempt, samples in enumerate(delays, start=1):
        ceiling = min(4.0, 0.5 * 2 ** (attempt - 1))
        assert all(ceiling / 2 <= d <= ceiling for d in samples)
        assert len(set(samples)) > 1  # jittered, so cameras do not all retry at once
    assert max(delays[-1]) <= 4.0


def test_backoff_is_exhausted_after_max_attempts_only_when_set():
    assert Backoff(max_attempts=3).exhausted(3) and not Backoff(max_attempts=3).exhausted(2)
    assert not Backoff(max_attempts=0).exhausted(10_000)


def test_final_states_are_ended_and_failed():
    assert {state for state in SourceState if state.final} == {SourceState.ENDED, SourceState.FAILED}
