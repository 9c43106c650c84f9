"""What a batch costs, learnt while the pipeline runs, and the batch size a latency budget allows.

`BatchCosts` keeps, per key (the runner uses the backend and the model's input size), an
exponentially weighted moving average of the seconds one batch of each size took. `choose` turns
those costs into a `Choice` for a live batch: of the sizes whose cost is known, the one that gives
the most frames per second while the oldest frame's age plus the batch's cost stays within the
budget, a larger size winning only when it gives at least `MIN_GAIN` times the frames/s (on a
CPU, where a batch of 4 costs 4 single frames, that is 1; on a GPU it is the largest that fits).
The wait is what the budget has left after that, capped by `max_wait_ms`. A size is compared only
after MIN_SAMPLES batches of it (the first, which pays the backend's warm-up, is replaced by the
second): the next size up is tried that often once the chosen one is known and its cost leaves
room for it (a larger batch is never cheaper per batch), and every `REFRESH_EVERY` batches a
neighbour that fits is tried again, up and down in turn, so the costs follow the machine's load.
docs/batching.md explains the rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

__all__ = ["AUTO_FACTOR", "AUTO_FLOOR_S", "BatchCosts", "Choice", "CostKey", "DEFAULT_ALPHA", "MIN_GAIN"]
__all__ += ["MIN_SAMPLES", "REFRESH_EVERY"]

DEFAULT_ALPHA = 0.2  # the weight of the newest observation in the moving average
MIN_GAIN = 1.25  # a larger batch must give 25% more frames/s to be worth its extra latency (and beat noise)
REFRESH_EVERY = 100  # batches between re-tries of a neighbouring size that fits the budget
MIN_SAMPLES = 4  # batches of a size (its warm-up included) before it is compared with another
AUTO_FACTOR = 1.5  # "auto" budget: a frame's own batch, plus half of one for a busy worker to come free
AUTO_FLOOR_S = 0.05  # and never under 50 ms, so a fast model's frames are not late for jitter


class CostKey(NamedTuple):
    """What a batch's cost depends on: the backend and the model's input size for the batch."""

    backend: str
    width: int
    height: int

    @property
    def input(self) -> str:
        return f"{self.width}x{self.height}"


@dataclass(frozen=True)
class Choice:
    """A live batch's size and how long it may wait to fill, with the reason (for the metrics)."""

    size: int
    wait_s: float
    expected_s: float | None  # the oldest frame's age plus the batch's cost; None while unknown
    exploring: bool = False


class BatchCosts:
    """Seconds per batch of each size, a moving average per key; `choose` picks a live batch's size."""

    def __init__(self, max_batch_size: int, alpha: float = DEFAULT_ALPHA) -> None:
        self.max_batch_size = max_batch_size
        self.alpha = alpha
        self._costs: dict[CostKey, dict[int, float]] = {}
        self._counts: dict[CostKey, dict[int, int]] = {}
        self._batches = 0
        self.last: Choice | None = None  # the latest live choice

    def observe(self, key: CostKey, size: int, seconds: float) -> None:
        """A batch of `size` frames took `seconds` (wall time of the model call)."""
        costs, counts = self._costs.setdefault(key, {}), self._counts.setdefault(key, {})
        previous, count = costs.get(size), counts.get(size, 0)
        # The first batch of a size also pays the backend's warm-up for its shape: the second replaces it.
        costs[size] = seconds if count < 2 else previous + self.alpha * (seconds - previous)  # type: ignore[operator]
        counts[size] = count + 1
        self._batches += 1

    def cost(self, key: CostKey, size: int) -> float | None:
        """The learnt seconds of a batch of `size`, or None when that size has not run."""
        return self._costs.get(key, {}).get(size)

    def auto_budget(self, key: CostKey) -> float | None:
        """`latency_budget_ms = "auto"`: AUTO_FACTOR x a batch of one's cost, at least AUTO_FLOOR_S;
        None until a batch of one has run."""
        one = self.cost(key, 1)
        return None if one is None else max(AUTO_FLOOR_S, AUTO_FACTOR * one)

    def snapshot(self) -> dict[CostKey, dict[int, tuple[float, int]]]:
        """Per key, per size: (average seconds per batch, batches observed)."""
        return {
            key: {size: (costs[size], self._counts[key][size]) for size in sorted(costs)}
            for key, costs in self._costs.items()
        }

    def choose(self, key: CostKey, age_s: float, budget_s: float, max_wait_s: float, available: int) -> Choice:
        """The size and wait of a live batch whose oldest frame is `age_s` old, `available` frames ready."""
        costs = self._costs.get(key, {})
        best = self._best_known(key, age_s, budget_s)
        explored = self._to_explore(key, best, age_s, budget_s, available)
        size = explored or best
        expected = age_s + costs[size] if size in costs else (age_s + costs[best] if best in costs else None)
        slack = budget_s - expected if expected is not None else 0.0
        wait = min(max_wait_s, max(0.0, slack)) if size > 1 else 0.0
        self.last = Choice(size, wait, expected, exploring=explored is not None)
        return self.last

    def _best_known(self, key: CostKey, age_s: float, budget_s: float) -> int:
        """The known size with the most frames/s (by MIN_GAIN steps) that keeps within the budget; 1 if
        none does. A size with fewer than MIN_SAMPLES batches is not known well enough to win yet."""
        best, costs = 1, self._costs.get(key, {})
        for size in sorted(costs):
            if self._counts[key][size] < MIN_SAMPLES and size != 1:
                continue
            if size > self.max_batch_size or age_s + costs[size] > budget_s:
                continue
            if best not in costs or size / costs[size] >= MIN_GAIN * best / costs[best]:
                best = size
        return best

    def _to_explore(self, key: CostKey, best: int, age_s: float, budget_s: float, available: int) -> int | None:
        """The next size up when it has not run and could still fit the budget; every REFRESH_EVERY
        batches a neighbour that has run and fits, up and down in turn, so a cost measured in a
        noisy moment is measured again."""
        costs = self._costs.get(key, {})
        if best not in costs or self._counts[key][best] < MIN_SAMPLES:  # know the chosen size first
            return None
        up, counts = best + 1, self._counts[key]
        if up <= min(self.max_batch_size, available) and counts.get(up, 0) < MIN_SAMPLES:  # not known yet
            return up if age_s + costs[best] <= budget_s else None  # at best as cheap as the smaller batch
        if self._batches % REFRESH_EVERY:
            return None
        size = up if (self._batches // REFRESH_EVERY) % 2 else best - 1
        fits = size in costs and age_s + costs[size] <= budget_s
        return size if fits and size <= min(self.max_batch_size, available) else None
