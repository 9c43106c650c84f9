"""The `track` stage: ByteTrack (from `trackers`, or supervision before 0.31: docs/tracking.md), one
tracker per source, ids unique across all of them, and, with an embedding model, a gallery of each
track's appearance to give a lost track its id back."""

from __future__ import annotations

import importlib.util
import itertools
import warnings
from collections import deque
from typing import Any, Callable, Iterator

import anyio
import numpy as np

from ..config import configured
from ..config.schema import TrackStageConfig
from ..errors import ParameterError
from ..frames import Detections, Frame, Result
from ..importing import import_optional
from ..interop import import_supervision
from .per_source import PerSource


class TrackStage:
    """Give every detection a `tracker_id`; drop those the tracker does not follow (yet).

    Configured by a TrackStageConfig or its keys as keyword options (`lost_frames=60`). With
    `appearance_model` set, `embedder` is that model, loaded (`load_track_stage` loads it).
    """

    def __init__(self, config: TrackStageConfig | None = None, /, *, embedder: Any = None, **options: Any) -> None:
        config = configured(TrackStageConfig, config, options)
        if (config.appearance_model is None) != (embedder is None):
            raise ParameterError(
                "TrackStage: pass `embedder` (the loaded appearance model) exactly when `appearance_model` is set; "
                "`await load_track_stage(config)` loads it"
            )
        self.config = config
        self.embedder = embedder
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
        tracker = new_bytetrack(self.settings)
        gallery = None
        if self.embedder is not None:
            gallery = Gallery(self.embedder.embed_boxes, self.config.appearance_threshold, self.config.gallery_frames)
        return SourceTracker(tracker, self._ids, forget_after=self.lost_frames + 1, gallery=gallery)

    async def __call__(self, result: Result) -> Result:
        tracker = self._trackers[result.frame]
        if self.embedder is None:
            result.detections = tracker.update(result.detections)
        else:  # crops are embedded: not on the event loop
            result.detections = await anyio.to_thread.run_sync(tracker.update, result.detections, result.frame)
        return result


def new_bytetrack(settings: dict[str, Any]) -> Any:
    """A ByteTrack with supervision's settings and `update_with_detections`: Roboflow's `trackers`
    when it is installed (ByteTrack's home since supervision 0.31), else supervision's own (<0.31)."""
    if importlib.util.find_spec("trackers") is None:
        sv = import_supervision()
        if hasattr(sv, "ByteTrack"):
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*ByteTrack.*deprecated.*")
                return sv.ByteTrack(**settings)
    trackers = import_optional("trackers", "tracking", "the track stage (ByteTrack left supervision in 0.31)")
    return TrackersByteTrack(trackers.ByteTrackTracker, settings)


class TrackersByteTrack:
    """`trackers`' ByteTrackTracker behaving as supervision's ByteTrack does with the same settings.

    Its thresholds are translated (supervision starts a track at `track_activation_threshold` + 0.1,
    splits high and low confidence at the threshold itself, ignores confidence <= 0.1, and matches
    at 1 - IoU <= `minimum_matching_threshold`, and keeps a lost track for `lost_track_buffer` + 1
    frames); untracked detections (id -1) are dropped; and the tracker's first frame is shown twice,
    as supervision confirms what its first frame holds at once.
    """

    IGNORED_CONFIDENCE = 0.1

    def __init__(self, tracker_class: type, settings: dict[str, Any]) -> None:
        activation = settings["track_activation_threshold"]
        self._tracker = tracker_class(
            lost_track_buffer=settings["lost_track_buffer"] + 1,  # supervision's is kept a frame longer
            frame_rate=settings["frame_rate"],
            track_activation_threshold=activation + 0.1 if activation + 0.1 <= 1.0 else activation,
            high_conf_det_threshold=activation,
            minimum_iou_threshold=1.0 - settings["minimum_matching_threshold"],
            minimum_consecutive_frames=settings["minimum_consecutive_frames"],
        )
        self._first_frame = settings["minimum_consecutive_frames"] == 1  # supervision's 1 is 2 but on frame 1

    def update_with_detections(self, detections: Any) -> Any:
        """The detections the tracker follows, each with its `tracker_id`."""
        detections = detections[detections.confidence > self.IGNORED_CONFIDENCE]
        if self._first_frame and len(detections):
            self._tracker.update(detections)
        self._first_frame = False
        tracked = self._tracker.update(detections)
        return tracked[tracked.tracker_id >= 0]


async def load_track_stage(config: TrackStageConfig) -> TrackStage:
    """A track stage, with its appearance model loaded when it names one."""
    if config.appearance_model is None:
        return await anyio.to_thread.run_sync(TrackStage, config)
    from ..engine import AutoModel

    embedder = await AutoModel.load(config.appearance_model, device=config.device, threads=config.threads)
    if embedder.info.task != "embedding":
        raise ParameterError(
            f"track stage: appearance_model {config.appearance_model!r} is a {embedder.info.task} model, "
            "not an embedding model (such as 'mobilenetv2-reid')"
        )
    return TrackStage(config, embedder=embedder)


class SourceTracker:
    """One source's tracker, translating its own ids (1, 2, ...) into ids no other source uses."""

    def __init__(self, tracker: Any, ids: Iterator[int], forget_after: int, gallery: Gallery | None = None) -> None:
        self._tracker = tracker
        self._ids = ids
        self._forget_after = forget_after
        self._gallery = gallery
        self._global: dict[int, int] = {}
        self._last_seen: dict[int, int] = {}
        self._updates = 0  # the tracker's own clock: frames it was shown (dropped frames never were)

    def update(self, detections: Detections, frame: Frame | None = None) -> Detections:
        """The detections the tracker follows, with their global ids (`frame`: what they were found
        in, which a gallery crops)."""
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
        kept.tracker_id = self._global_ids([int(own) for own in tracked.tracker_id], kept, frame)
        return kept

    def _global_ids(self, owns: list[int], kept: Detections, frame: Frame | None) -> np.ndarray:
        """Known tracks keep their ids; a new one takes a lost track's (by appearance) or a fresh one."""
        ids = np.array([self._global.get(own, 0) for own in owns], np.int64)  # 0: not known yet
        if self._gallery is not None and frame is not None:
            self._gallery.identify(ids, kept, frame, self._updates, self._ids)
        for i, own in enumerate(owns):
            if ids[i] == 0:
                ids[i] = next(self._ids)
            elif self._global.get(own) != ids[i]:  # re-identified: the id leaves whichever track had it
                self._drop_id(int(ids[i]))
            self._global[own] = int(ids[i])
            self._last_seen[own] = self._updates
        return ids

    def _drop_id(self, global_id: int) -> None:
        for own in [own for own, known in self._global.items() if known == global_id]:
            del self._global[own], self._last_seen[own]

    def _forget(self) -> None:
        """Drop ids the tracker has retired, so a daemon's memory does not grow with every track."""
        for own, seen in list(self._last_seen.items()):
            if self._updates - seen > self._forget_after:
                del self._last_seen[own], self._global[own]
        if self._gallery is not None:
            self._gallery.forget(self._updates)


class Gallery:
    """Each track's recent appearance (up to `SIZE` embeddings, one per `REFRESH_FRAMES` frames), to
    give a new track the id of a lost one it looks like.

    A new track is compared with the tracks lost within `max_age` frames at once and, while it is
    young (`YOUNG_FRAMES`, as an object coming out from behind another is not all in view at first),
    on every frame: matched, it takes the lost track's id (a young one gives up the id it had).
    `embed(frame, xyxy)` returns (N, D) unit-length embeddings of the boxes' crops.
    """

    SIZE = 8
    REFRESH_FRAMES = 5
    YOUNG_FRAMES = 10

    def __init__(self, embed: Callable[[Frame, np.ndarray], np.ndarray], threshold: float, max_age: int) -> None:
        self._embed = embed
        self.threshold = threshold
        self.max_age = max_age
        self._embeddings: dict[int, deque[np.ndarray]] = {}
        self._seen: dict[int, int] = {}  # global id -> when the track was last followed
        self._added: dict[int, int] = {}  # global id -> when its gallery last took an embedding
        self._born: dict[int, int] = {}  # global id -> when a fresh id was given, while young

    def identify(self, ids: np.ndarray, kept: Detections, frame: Frame, now: int, fresh: Iterator[int]) -> None:
        """Give the new tracks (0 in `ids`) and the young ones the ids of lost tracks they match,
        the new ones left a `fresh` id, in place; embed what is due into the galleries."""
        young = (ids == 0) | np.isin(ids, [i for i, born in self._born.items() if now - born < self.YOUNG_FRAMES])
        refresh = [now - self._added.get(int(i), -self.REFRESH_FRAMES) >= self.REFRESH_FRAMES for i in ids]
        due = young | np.array(refresh, bool)
        rows = np.flatnonzero(due)
        embeddings = self._embed(frame, kept.xyxy[rows]) if len(rows) else np.zeros((0, 0), np.float32)
        matched = self._match(embeddings[young[rows]], set(ids[ids > 0].tolist()), now)
        for row, lost in zip(np.flatnonzero(young), matched):
            if lost:
                self._forget_id(int(ids[row]))
                ids[row] = lost
            elif ids[row] == 0:
                ids[row] = next(fresh)
                self._born[int(ids[row])] = now
        for row, embedding in zip(rows, embeddings):
            self._add(int(ids[row]), embedding, now)
        for global_id in ids.tolist():
            self._seen[global_id] = now

    def _match(self, embeddings: np.ndarray, active: set[int], now: int) -> list[int]:
        """For each embedding, the lost track it matches best (0: none), each lost track given once."""
        lost = [i for i, seen in self._seen.items() if i not in active and now - seen <= self.max_age]
        matched = [0] * len(embeddings)
        if not lost or not len(embeddings):
            return matched
        # Each lost track's best similarity to each embedding: (new, lost).
        similarity = np.stack([(embeddings @ np.stack(self._embeddings[i]).T).max(axis=1) for i in lost], axis=1)
        for _ in range(min(len(embeddings), len(lost))):
            row, column = np.unravel_index(np.argmax(similarity), similarity.shape)
            if similarity[row, column] < self.threshold:
                break
            matched[row] = lost[column]
            similarity[row, :] = similarity[:, column] = -np.inf
        return matched

    def _add(self, global_id: int, embedding: np.ndarray, now: int) -> None:
        self._embeddings.setdefault(global_id, deque(maxlen=self.SIZE)).append(embedding)
        self._added[global_id] = now

    def forget(self, now: int) -> None:
        """Drop the galleries of tracks lost for longer than `max_age`."""
        for global_id in [i for i, seen in self._seen.items() if now - seen > self.max_age]:
            self._forget_id(global_id)
        for global_id in [i for i, born in self._born.items() if now - born >= self.YOUNG_FRAMES]:
            del self._born[global_id]

    def _forget_id(self, global_id: int) -> None:
        for kept in (self._seen, self._embeddings, self._added, self._born):
            kept.pop(global_id, None)
