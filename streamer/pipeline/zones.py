"""The `zones` stage: zone enter/leave and line-cross events from tracked detections.

supervision does the geometry (PolygonZone decides who is inside, LineZone who crossed); this module
keeps, per source, who was inside each zone, turns changes into Events, and writes counts per zone
and class into `result.extra["zones"]` and `result.extra["lines"]`.

The "center_of_mass" anchor is each mask's centroid (streamer.masks.CropMasks.centroids, from the
crops, never from full-frame bitmaps), or the box centre for a box without a mask (or without a set
pixel): supervision is then shown a point per detection and asked about its centre.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

import numpy as np

from ..config import configured, schema
from ..errors import StageError
from ..frames import Detections, Frame, Result, Shape
from ..interop import import_supervision, to_supervision
from .per_source import PerSource


class ZonesStage:
    """Events when tracked objects enter or leave zones and cross lines (see schema.ZonesStageConfig)."""

    def __init__(self, config: schema.ZonesStageConfig | None = None, /, **options: Any) -> None:
        config = configured(schema.ZonesStageConfig, config, options)
        self.zones = list(config.zones)
        self.lines = list(config.lines)
        self.sources = frozenset(config.sources) if config.sources is not None else None
        self.relative = config.relative
        self.forget_after_frames = config.forget_after_frames
        self._scenes: PerSource[_Scene] = PerSource(self._new_scene, keep_retired=True)

    def _new_scene(self, frame: Frame) -> _Scene:
        scale = np.array([frame.width, frame.height], np.float64) if self.relative else np.ones(2)

        def pixels(points: Sequence[tuple[float, float]]) -> np.ndarray:
            return np.rint(np.asarray(points, np.float64) * scale).astype(np.int64)

        watches: list[_ZoneWatch | _LineWatch] = [
            _ZoneWatch(zone, pixels(zone.polygon), self.forget_after_frames) for zone in self.zones
        ]
        watches += [_LineWatch(line, pixels([line.start, line.end])) for line in self.lines]
        return _Scene(watches)

    async def __call__(self, result: Result) -> Result:
        if self.sources is not None and result.source_id not in self.sources:
            return result
        if result.detections.tracker_id is None:
            raise StageError("the zones stage needs tracker ids: put a `track` stage before it in `stages`")
        scene = self._scenes[result.frame]
        previous = self._scenes.retired.pop(result.source_id, None)
        if previous is not None:  # the source reconnected, looped or changed size: tracks start over
            previous.close(result)
            scene.carry_counts(previous)
        scene.update(result)
        return result


class _Scene:
    """One source's zones and lines, at that source's resolution."""

    def __init__(self, watches: list[_ZoneWatch | _LineWatch]) -> None:
        self.watches = watches
        self.by_mass = any(watch.by_mass for watch in watches)
        self.dense_masks = any(watch.needs_dense_masks for watch in watches)

    def update(self, result: Result) -> None:
        detections = to_supervision(result, masks=self.dense_masks)
        points = _mass_points(result.detections, detections) if self.by_mass else None
        names = np.array(result.class_names(), dtype=object)
        for watch in self.watches:
            watch.update(result, points if watch.by_mass else detections, names)

    def close(self, result: Result) -> None:
        """Every track still inside a zone leaves it (its id will not be seen again)."""
        for watch in self.watches:
            if isinstance(watch, _ZoneWatch):
                for tracker_id in list(watch.inside):
                    watch.leave(result, tracker_id, reason="source restarted")

    def carry_counts(self, previous: _Scene) -> None:
        """Keep the running totals (entered, left, crossed) of the scene this one replaces."""
        for watch, old in zip(self.watches, previous.watches):
            watch.carry_counts(old)  # type: ignore[arg-type]


def _selected(detections: Any, names: np.ndarray, classes: list[str] | None) -> tuple[Any, np.ndarray]:
    if classes is None:
        return detections, names
    keep = np.isin(names, classes)
    return detections[keep], names[keep]


def _anchor(name: str) -> Any:
    return import_supervision().Position[name.upper()]


def _mass_points(ours: Detections, detections: Any) -> Any:
    """The detections as zero-size boxes at their masks' centroids (box centres where no mask tells)."""
    centres = (ours.xyxy[:, :2] + ours.xyxy[:, 2:]) / 2
    if ours.mask is not None:
        centroids = ours.mask.centroids()
        centres = np.where(np.isnan(centroids), centres, centroids)
    points = detections[np.arange(len(detections))]
    points.xyxy = np.concatenate([centres, centres], axis=1).astype(np.float32)
    return points


class _ZoneWatch:
    """Who is inside one zone: an enter event when a track's anchor comes in, leave when it goes out
    or the track is not seen for `forget_after` frames."""

    def __init__(self, config: schema.ZoneConfig, polygon: np.ndarray, forget_after: int) -> None:
        sv = import_supervision()
        self.config = config
        self.by_mass, self.needs_dense_masks = config.anchor == "center_of_mass", False
        anchor = _anchor("center" if self.by_mass else config.anchor)  # by mass: shown the centroids
        self.zone = sv.PolygonZone(polygon=polygon, triggering_anchors=(anchor,))
        self.shape = Shape(config.name, polygon, closed=True)
        self.forget_after = forget_after
        self.inside: dict[int, tuple[str, int]] = {}  # tracker id -> (class name, frame last seen)
        self.entered: Counter[str] = Counter()
        self.left: Counter[str] = Counter()

    def update(self, result: Result, detections: Any, names: np.ndarray) -> None:
        detections, names = _selected(detections, names, self.config.classes)
        is_in = self.zone.trigger(detections) if len(detections) else np.zeros(0, bool)
        index = result.frame_index
        seen = set()
        for tracker_id, name, inside in zip(detections.tracker_id.tolist(), names, is_in):
            seen.add(tracker_id)
            if inside and tracker_id not in self.inside:
                self.entered[name] += 1
                self.inside[tracker_id] = (name, index)
                self._emit(result, "zone_enter", tracker_id, name)
            elif inside:
                self.inside[tracker_id] = (name, index)
            elif tracker_id in self.inside:
                self.leave(result, tracker_id)
        for tracker_id, (_, last_seen) in list(self.inside.items()):
            if tracker_id not in seen and index - last_seen >= self.forget_after:
                self.leave(result, tracker_id, reason="lost")
        result.extra.setdefault("zones", {})[self.config.name] = {
            "inside": self.counts(),
            "entered": dict(self.entered),
            "left": dict(self.left),
        }
        result.shapes.append(self.shape)

    def counts(self) -> dict[str, int]:
        return dict(Counter(name for name, _ in self.inside.values()))

    def carry_counts(self, old: _ZoneWatch) -> None:
        self.entered, self.left = old.entered, old.left

    def leave(self, result: Result, tracker_id: int, reason: str = "exited") -> None:
        name, _ = self.inside.pop(tracker_id)
        self.left[name] += 1
        self._emit(result, "zone_leave", tracker_id, name, reason=reason)

    def _emit(self, result: Result, kind: str, tracker_id: int, name: str, **more: str) -> None:
        result.emit(kind, zone=self.config.name, tracker_id=tracker_id, class_name=name, counts=self.counts(), **more)


class _LineWatch:
    """Crossings of one line, in supervision's sense of "in" and "out" (relative to start -> end)."""

    def __init__(self, config: schema.LineConfig, ends: np.ndarray) -> None:
        sv = import_supervision()
        self.config = config
        start, end = (sv.Point(int(x), int(y)) for x, y in ends)
        self.by_mass = set(config.anchors) == {"center_of_mass"}
        self.needs_dense_masks = "center_of_mass" in config.anchors and not self.by_mass  # supervision's way
        anchors = (_anchor("center"),) if self.by_mass else tuple(_anchor(name) for name in config.anchors)
        self.line = sv.LineZone(start, end, triggering_anchors=anchors, minimum_crossing_threshold=config.min_crossing_frames)
        self.shape = Shape(config.name, ends, closed=False)
        self.crossed: dict[str, Counter[str]] = {"in": Counter(), "out": Counter()}

    def update(self, result: Result, detections: Any, names: np.ndarray) -> None:
        detections, names = _selected(detections, names, self.config.classes)
        if len(detections):
            crossed_in, crossed_out = self.line.trigger(detections)
            for direction, crossed in (("in", crossed_in), ("out", crossed_out)):
                for i in np.flatnonzero(crossed):
                    self._cross(result, direction, int(detections.tracker_id[i]), str(names[i]))
        result.extra.setdefault("lines", {})[self.config.name] = {
            direction: dict(counts) for direction, counts in self.crossed.items()
        }
        result.shapes.append(self.shape)

    def carry_counts(self, old: _LineWatch) -> None:
        self.crossed = old.crossed

    def _cross(self, result: Result, direction: str, tracker_id: int, name: str) -> None:
        self.crossed[direction][name] += 1
        result.emit(
            "line_cross",
            line=self.config.name,
            direction=direction,
            tracker_id=tracker_id,
            class_name=name,
            counts={key: dict(counts) for key, counts in self.crossed.items()},
        )
