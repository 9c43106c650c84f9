"""Snapshot sink: a JPEG of the frame when a detection of interest appears.

A frame qualifies when one of its detections is of a class in `classes` (any class when None) with
confidence >= `min_confidence`. It is saved as `<folder>/<source>/<source>_<frame index>_<UTC
time, YYYYmmddTHHMMSS.fff>.jpg`, drawn as the video sink draws (boxes, labels, masks, skeletons)
unless `annotate=False`. At most one
snapshot per source per `min_interval_s`, measured on the source's own timeline (frame timestamps),
so a recording read faster than real time still gets one snapshot per `min_interval_s` of video.
Drawing and encoding (Pillow) run in a worker thread; a file appears whole or not at all.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import anyio
import numpy as np

from ..config import configured
from ..config.schema import SnapshotSinkConfig
from ..errors import SinkError
from ..frames import Result
from .base import Sink
from .video import Annotator


class SnapshotSink(Sink):
    config: SnapshotSinkConfig

    def __init__(self, config: SnapshotSinkConfig | None = None, /, **options: Any) -> None:
        config = configured(SnapshotSinkConfig, config, options)
        super().__init__(config)
        self.folder = Path(config.folder)
        self.classes = frozenset(config.classes) if config.classes is not None else None
        self.written = 0
        self._last: dict[str, float] = {}  # source id -> timeline time of its last snapshot
        self._annotator: Annotator | None = None

    def describe(self) -> str:
        return f"snapshots {self.folder}"

    def stats(self) -> dict[str, float]:
        return {"snapshots": self.written}

    async def __aenter__(self) -> SnapshotSink:
        await anyio.to_thread.run_sync(self._enter)  # a slow disk; importing the annotators
        return self

    def _enter(self) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.folder):
                pass
        except OSError as exc:
            raise SinkError(
                f"snapshot sink: cannot write to folder {str(self.folder)!r}: {exc.strerror or exc}; "
                "choose a writable folder"
            ) from exc
        if self.config.annotate:
            self._annotator = Annotator()

    def wants(self, result: Result) -> bool:
        """Whether this result has a detection that calls for a snapshot."""
        if not len(result.detections):
            return False
        confident = result.detections.confidence >= self.config.min_confidence
        if self.classes is None:
            return bool(confident.any())
        named = np.array([name in self.classes for name in result.class_names()], dtype=bool)
        return bool((confident & named).any())

    async def write(self, result: Result) -> None:
        if not self.wants(result) or not self._due(result):
            return
        await anyio.to_thread.run_sync(self._save, result)
        self.written += 1

    def _due(self, result: Result) -> bool:
        now = result.frame.pts if result.frame.pts is not None else result.frame.wall_time
        last = self._last.get(result.source_id)
        if last is not None and last <= now < last + self.config.min_interval_s:
            return False  # (a timeline that went backwards starts afresh)
        self._last[result.source_id] = now
        return True

    def _save(self, result: Result) -> Path:
        """Runs in a worker thread: draw, encode to a temporary name, then rename into place."""
        from PIL import Image

        image = self._annotator(result) if self._annotator is not None else result.frame.image
        target = self._path_for(result)
        partial = target.with_name(target.name + ".part")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.ascontiguousarray(image)).save(partial, "JPEG", quality=self.config.quality)
            os.replace(partial, target)
        except OSError as exc:
            with contextlib.suppress(OSError):
                partial.unlink(missing_ok=True)
            raise SinkError(f"snapshot sink: cannot write {str(target)!r}: {exc.strerror or exc}") from exc
        return target

    def _path_for(self, result: Result) -> Path:
        source = _safe_name(result.source_id)
        stamp = datetime.fromtimestamp(result.frame.wall_time, timezone.utc).strftime("%Y%m%dT%H%M%S.%f")[:-3]
        stem = f"{source}_{result.frame_index}_{stamp}"
        target, n = self.folder / source / f"{stem}.jpg", 0
        while target.exists():  # the same frame index at the same millisecond: a restarted run
            n += 1
            target = self.folder / source / f"{stem}-{n}.jpg"
        return target


def _safe_name(name: str) -> str:
    """A source id as one file-name component: no separators, not hidden, never `.` or `..`."""
    return re.sub(r"^\.", "_", re.sub(r"[^A-Za-z0-9._-]", "_", name))
