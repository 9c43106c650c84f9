import random

from streamer.backoff import Backoff


def test_backoff_when_attempts_grow_doubles_up_to_the_cap_with_jitter_in_the_upper_half():
    backoff, rng = Backoff(initial_s=1.0, max_s=4.0), random.Random(7)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (9, 4.0)]:
        delays = [backoff.delay(attempt, rng) for _ in range(50)]
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)


def test_backoff_when_max_attempts_zero_is_never_exhausted():
    assert not Backoff(max_attempts=0).exhausted(10**6)
    assert Backoff(max_attempts=3).exhausted(3) and not Backoff(max_attempts=3).exhausted(2)
