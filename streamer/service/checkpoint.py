"""Checkpoints for resumable file jobs: a restarted run goes on after the last frame every sink wrote.

`Progress` watches the sinks write (it is a pipeline Observer): for each source, the frontier is
the lowest frame index that every sink taking that source's frames has written. `Checkpointer`
saves the frontier of each file source every `interval_s` and when the run ends: it snapshots the
frontier, flushes the sinks (so what they wrote is in the files), then replaces the checkpoint file
atomically. A run killed at any moment therefore finds a checkpoint at or behind what the files
hold: it resumes after it (see `AvSource.start_after`), and the JSONL sink, reopened with
`resume`, skips the frames it already holds. Nothing is delivered twice to a file, nothing is
missed.

The file is JSON: {"version": 1, "sources": {id: {"path", "size", "mtime_ns", "index", "pts"}}}.
An entry whose file changed size or modification time since is ignored (the job starts over).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import anyio

from ..config.schema import Config, FileSourceConfig
from ..frames import Event, Result
from ..pipeline.observer import IgnoringObserver
from ..pipeline.runner import Stream
from ..sinks import accepts

log = logging.getLogger("streamer.checkpoint")

VERSION = 1
Position = tuple[int, "float | None"]


class Progress(IgnoringObserver):
    """The last frame (index, pts) each sink wrote, per source; an Observer of the pipeline."""

    def __init__(self) -> None:
        self._written: dict[str, dict[str, Position]] = {}

    def sink_wrote(self, sink: str, item: Result | Event) -> None:
        if isinstance(item, Result):
            self._written.setdefault(sink, {})[item.source_id] = (item.frame_index, item.frame.pts)

    def frontier(self, stream: Stream, source_id: str) -> Position | None:
        """The last frame of `source_id` that every sink taking its frames has written."""
        probe = _Probe(source_id)
        positions = []
        for sink in stream.sinks:
            if accepts(sink, probe):  # type: ignore[arg-type]
                position = self._written.get(sink.describe(), {}).get(source_id)
                if position is None:
                    return None
                positions.append(position)
        return min(positions, key=lambda position: position[0]) if positions else None


class _Probe:
    """Stands for a frame of one source when asking a sink whether it takes it."""

    def __init__(self, source_id: str) -> None:
        self.source_id = source_id


def resumable(config: Config) -> list[FileSourceConfig]:
    """The sources a checkpoint can resume: files read once (not looped)."""
    return [source for source in config.sources if isinstance(source, FileSourceConfig) and not source.loop]


def load(path: str | Path, config: Config) -> dict[str, Position] | None:
    """Where each file source stopped, from the checkpoint at `path`; None when there is none."""
    try:
        saved = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("checkpoint %s unreadable (%s): starting over", path, exc)
        return None
    if saved.get("version") != VERSION:
        log.warning("checkpoint %s has version %r, not %d: starting over", path, saved.get("version"), VERSION)
        return None
    positions: dict[str, Position] = {}
    for source in resumable(config):
        entry = saved.get("sources", {}).get(source.id)
        if entry is None:
            continue
        if entry.get("path") != source.path or _identity(source.path) != (entry.get("size"), entry.get("mtime_ns")):
            log.warning("source %s: %s changed since the checkpoint: starting it over", source.id, source.path)
            continue
        positions[source.id] = (int(entry["index"]), entry.get("pts"))
        log.info("source %s: resuming after frame %d", source.id, entry["index"])
    return positions


def _identity(path: str) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


class Checkpointer:
    """Saves the frontier of every resumable source to `path`, every `interval_s` and at the end."""

    def __init__(self, stream: Stream, path: str | Path, interval_s: float, start: dict[str, Position] | None) -> None:
        self.stream = stream
        self.path = Path(path)
        self.interval_s = interval_s
        self.progress = Progress()
        self.saved = dict(start or {})  # a source not yet written this run keeps its old position
        self.saves = 0
        self._sources = {source.id: source for source in resumable(stream.config)}
        stream.observers.add(self.progress)

    async def run(self) -> None:
        """Save periodically until cancelled (the caller saves once more at the very end)."""
        while True:
            await anyio.sleep(self.interval_s)
            self.save()

    def save(self) -> None:
        """Snapshot the frontier, flush the sinks, then replace the file (no await in between)."""
        for source_id in self._sources:
            position = self.progress.frontier(self.stream, source_id)
            if position is not None:
                self.saved[source_id] = position
        for sink in self.stream.sinks:
            sink.flush_to_disk()
        self._write({source_id: self._entry(source_id, position) for source_id, position in self.saved.items()})
        self.saves += 1

    def _entry(self, source_id: str, position: Position) -> dict[str, Any]:
        path = self._sources[source_id].path
        size, mtime_ns = _identity(path) or (None, None)
        return {"path": path, "size": size, "mtime_ns": mtime_ns, "index": position[0], "pts": position[1]}

    def _write(self, sources: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(self.path.name + ".tmp")
        with open(temporary, "w") as file:
            json.dump({"version": VERSION, "sources": sources}, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, self.path)
