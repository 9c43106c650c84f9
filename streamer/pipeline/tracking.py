"""The `track` stage: supervision's ByteTrack, one tracker per source, ids unique across all of them."""

from __future__ import annotations

import itertools
import warnings
from typing import Any, Iterator

import numpy as np

from ..config import configured
from ..config.schema import TrackStageConfig
from ..frames import Detections, Frame, Result
from ..interop import import_supervision
from .per_source import PerSource


class TrackStage:
    """Give every detection a `tracker_id`; drop those the tracker does not follow (yet).

    Configured by a TrackStageConfig or its keys as keyword options (`lost_frames=60`).
    """

    def __init__(self, config: TrackStageConfig | None = None, /, **options: Any) -> None:
        config = configured(TrackStageConfig, config, options)
        self.settings = {
            "track_activation_threshold": config.activation_threshold,
            "lost_track_buffer": config.lost_frames,
            "minimum_matching_threshold": config.match_threshold,
            "minimum_consecutive_frames": config.min_frames,
            "frame_rate": 30,  # ByteTrack scales lost_track_buffer by frame_rate / 30: keep it in frames
        }
        self.lost_frames = config.lost_frames
        self._ids = itertools.count(1)
        self._trackers: PerSource[SourceTracker] = PerSource(self._new_tracker)

    def _new_tracker(self, frame: Frame) -> SourceTracker:
        sv = import_supervision()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*ByteTrack.*deprecated.*")
            tracker = sv.ByteTrack(**self.settings)
        return SourceTracker(tracker, self._ids, forget_after=self.lost_frames + 1)

    async def __call__(self, result: Result) -> Result:
        tracker = self._trackers[result.frame]
        result.detections = tracker.update(result.detections)
        return result


class SourceTracker:
    """One source's tracker, translating its own ids (1, 2, ...) into ids no other source uses."""

    def __init__(self, tracker: Any, ids: Iterator[int], forget_after: int) -> None:
        self._tracker = tracker
        self._ids = ids
        self._forget_after = forget_after
        self._global: dict[int, int] = {}
        self._last_seen: dict[int, int] = {}
        self._updates = 0  # the tracker's own clock: frames it was shown (dropped frames never were)

    def update(self, detections: Detections) -> Detections:
        sv = import_supervision()
        self._updates += 1
        if self._updates % 64 == 0:
            self._forget()
        given = sv.Detections(
            xyxy=detections.xyxy.astype(np.float32, copy=False),
            confidence=detections.confidence,
            class_id=detections.class_id.astype(int, copy=False),
            data={"row": np.arange(len(detections))},
        )
        tracked = self._tracker.update_with_detections(given)
        if not len(tracked):
            kept = detections[np.zeros(0, dtype=np.int64)]
            kept.tracker_id = np.zeros(0, dtype=np.int64)
            return kept
        kept = detections[tracked.data["row"]]
        kept.tracker_id = np.array([self._global_id(int(own)) for own in tracked.tracker_id], np.int64)
        return kept

    def _global_id(self, own: int) -> int:
        if own not in self._global:
            self._global[own] = next(self._ids)
        self._last_seen[own] = self._updates
        return self._global[own]

    def _forget(self) -> None:
        """Drop ids the tracker has retired, so a daemon's memory does not grow with every track."""
        for own, seen in list(self._last_seen.items()):
            if self._updates - seen > self._forget_after:
                del self._last_seen[own], self._global[own]
