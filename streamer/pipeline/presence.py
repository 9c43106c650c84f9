"""The `presence` stage: `class_appeared` and `class_disappeared` events, debounced per source."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from ..config import configured
from ..config.schema import PresenceStageConfig
from ..frames import Frame, Result
from .per_source import PerSource


@dataclass
class _Streak:
    present: bool = False
    seen: int = 0  # consecutive frames with the class (while absent)
    missed: int = 0  # consecutive frames without it (while present)
    first_frame: int = 0


class PresenceStage:
    """A class appears once it is in `appear_frames` frames in a row, and disappears once it is
    missing from `disappear_frames` frames in a row; each change is one event with the count.
    Configured by a PresenceStageConfig or its keys as keyword options."""

    def __init__(self, config: PresenceStageConfig | None = None, /, **options: Any) -> None:
        config = configured(PresenceStageConfig, config, options)
        self.classes = frozenset(config.classes) if config.classes is not None else None
        self.min_confidence = config.min_confidence
        self.appear_frames = config.appear_frames
        self.disappear_frames = config.disappear_frames
        self._streaks: PerSource[dict[str, _Streak]] = PerSource(self._new_source, keep_retired=True)

    @staticmethod
    def _new_source(frame: Frame) -> dict[str, _Streak]:
        return {}

    async def __call__(self, result: Result) -> Result:
        confident = result.detections.confidence >= self.min_confidence
        counts = Counter(name for name, keep in zip(result.class_names(), confident) if keep)
        if self.classes is not None:
            counts = Counter({name: n for name, n in counts.items() if name in self.classes})
        streaks = self._streaks[result.frame]
        previous = self._streaks.retired.pop(result.source_id, None)
        for name, streak in (previous or {}).items():  # the source restarted: what was there is gone
            if streak.present:
                result.emit("class_disappeared", class_name=name, count=0, since_frame=result.frame_index, reason="source restarted")
        for name in set(counts) | set(streaks):
            streak = streaks.setdefault(name, _Streak())
            self._step(result, name, streak, counts[name])
            if not streak.present and not streak.seen:
                del streaks[name]
        return result

    def _step(self, result: Result, name: str, streak: _Streak, count: int) -> None:
        if count and not streak.present:
            if not streak.seen:
                streak.first_frame = result.frame_index
            streak.seen += 1
            if streak.seen >= self.appear_frames:
                streak.present, streak.seen, streak.missed = True, 0, 0
                result.emit("class_appeared", class_name=name, count=count, since_frame=streak.first_frame)
        elif count:
            streak.missed = 0
        elif streak.present:
            if not streak.missed:
                streak.first_frame = result.frame_index
            streak.missed += 1
            if streak.missed >= self.disappear_frames:
                streak.present, streak.missed = False, 0
                result.emit("class_disappeared", class_name=name, count=0, since_frame=streak.first_frame)
        else:
            streak.seen = 0
