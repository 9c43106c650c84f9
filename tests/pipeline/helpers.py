"""Shared by the stage tests: hand-made results, where the moving face is in each frame, and one
pipeline run in a thread of its own, so a module-scoped fixture can share a run between tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from anyio.from_thread import start_blocking_portal

import streamer
from streamer.frames import Detections, Frame, ModelInfo, Result
from streamer.pipeline.summary import Summary
from tests.conftest import ASTRONAUT_FACE
from tests.media import FACE_CROP, MOVING_SIZE, face_box

# Names the real default model, so stages that look for "the face detector" take it for one.
MODEL = ModelInfo(
    "centerface", "centerface", "detection", "onnxruntime-cpu", "test", "ab" * 32, ("face", "person"), (32, 32)
)


def make_result(
    index: int,
    boxes: Sequence[Sequence[float]] = (),
    *,
    source: str = "cam",
    session: int = 0,
    size: tuple[int, int] = MOVING_SIZE,
    class_ids: Sequence[int] | None = None,
    confidence: float = 0.9,
    tracker_ids: Sequence[int] | None = None,
    fps: float = 15.0,
) -> Result:
    """A result for frame `index` of `source` (a black `size` picture) with these boxes (xyxy)."""
    n = len(boxes)
    detections = Detections(
        xyxy=np.array(boxes, np.float32).reshape(n, 4),
        confidence=np.full(n, confidence, np.float32),
        class_id=np.array(class_ids if class_ids is not None else [0] * n, np.int64),
        tracker_id=None if tracker_ids is None else np.array(tracker_ids, np.int64),
    )
    width, height = size
    frame = Frame(
        source, index, index / fps, 1.7e9 + index / fps, image=np.zeros((height, width, 3), np.uint8), session=session
    )
    return Result(frame, detections, MODEL)


def expected_face(index: int) -> tuple[float, float, float, float]:
    """Where the face is in frame `index` of the moving-face clip, from the clip's geometry alone:
    the pasted crop's position (`face_box`) plus the face's place inside the crop (the hand-measured
    ASTRONAUT_FACE, in photo coordinates, minus the crop's corner)."""
    left, top, _, _ = face_box(index)
    crop_x, crop_y = FACE_CROP[:2]
    x1, y1, x2, y2 = ASTRONAUT_FACE
    return left + x1 - crop_x, top + y1 - crop_y, left + x2 - crop_x, top + y2 - crop_y


def first_frame(condition: Callable[[tuple[float, float, float, float]], bool], frames: int = 60) -> int:
    """The first frame of the moving-face clip whose expected face box meets `condition`."""
    return next(index for index in range(frames) if condition(expected_face(index)))


def file_source(path: Path, id: str, **extra: Any) -> dict[str, Any]:
    return {"type": "file", "id": id, "path": str(path), **extra}


def pipeline_config(*sources: dict[str, Any], stages: Sequence[Any] = (), sinks: Sequence[Any] = ()) -> dict[str, Any]:
    return {
        "sources": list(sources),
        "stages": list(stages),
        "sinks": list(sinks),
        "batching": {"max_batch_size": 4, "max_wait_ms": 5},
    }


def run_pipeline(
    config: dict[str, Any],
    model: Any,
    *,
    sinks: Sequence[Any] = (),
    subscriptions: dict[str, Callable[[Any], Any]] | None = None,
) -> Summary:
    """Run `config` to its end on an event loop in another thread (for sync module-scoped fixtures),
    with `stream.subscribe(pattern, callback)` for each item of `subscriptions`."""

    async def run() -> Summary:
        async with streamer.open(config, model=model, sinks=list(sinks), results=False) as stream:
            for pattern, callback in (subscriptions or {}).items():
                stream.subscribe(pattern, callback)
            return await stream.wait()

    with start_blocking_portal() as portal:
        return portal.call(run)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def without_model(row: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in row.items() if key != "model"}
