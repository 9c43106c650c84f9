"""Stages and a callback written the way users write theirs: plain functions, named in a config as
`tests.pipeline.user_stages:<function>`."""

from __future__ import annotations

from typing import Any

from streamer.frames import Event, Result

remembered: list[tuple[str, str, int]] = []  # what `remember` was called with: (type, kind, frame index)


async def face_count(result: Result, every: int = 20) -> Result:
    """Every `every` frames, a `face_count` event with the faces in view and their track ids."""
    if result.frame_index % every == 0:
        tracker_ids = [] if result.detections.tracker_id is None else result.detections.tracker_id.tolist()
        result.emit("face_count", faces=len(result.detections), tracker_ids=tracker_ids)
    return result


def announce_and_drop_odd(result: Result) -> Result | None:
    """Drop odd frames, saying so with an event first."""
    if result.frame_index % 2:
        result.emit("dropped", reason="odd frame")
        return None
    return result


def fresh_copy(result: Result) -> Result:
    """Return a new Result for the frame (as a stage that rebuilds its detections might)."""
    return Result(result.frame, result.detections, result.model, dict(result.extra))


async def mark_every_frame(result: Result) -> Result:
    result.emit("marker")
    return result


def remember(item: Any) -> None:
    """A callback sink: note each item's type, kind and frame."""
    kind = item.kind if isinstance(item, Event) else "frame"
    remembered.append((type(item).__name__, kind, item.frame_index))
