"""JSONL sink: one JSON object per frame, per line, optionally rotated by size or age.

Each line is `Result.to_dict()` (or `Event.to_dict()`): the versioned results schema documented in
docs/results.md, with a `"schema"` number on every line; embeddings only with `embeddings = true`.

A rotated file is renamed `<stem>.<UTC time of rotation, YYYYmmddTHHMMSS>[-n]<suffix>` next to the
current one (`-1`, `-2` ... only when that name is taken: nothing is overwritten) and a fresh file
is opened at the configured path. Rotation happens between lines, so no line is ever split.
"""

from __future__ import annotations

import errno
import os
import re
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Iterator

import anyio
import msgspec

from ..config import configured
from ..config.schema import JsonlSinkConfig
from ..errors import SinkError
from ..frames import Event
from .base import Item, Sink
from .files import prepare_output


FLUSH_EVERY_S = 0.25


class JsonlSink(Sink):
    """Lines are flushed to the OS at least every quarter second, on rotation, and on close.

    `rotate_bytes`: start a new file before a line would take the current one past this size (a file
    always holds at least one line). `rotate_seconds`: start a new file at the first line written
    that long after the current one was opened. `keep`: how many rotated files to keep, deleting the
    oldest (None keeps all). Without rotation an existing file is replaced, as before; with it, an
    existing non-empty file is rotated away first, so a restart loses nothing.

    `resume` (a run restarted from a checkpoint): append to the existing file instead, after cutting
    off a line a killed run left half-written, and skip every frame (and event) of a source whose
    frame index is not past the last one the file already holds for it.
    """

    config: JsonlSinkConfig

    def __init__(self, config: JsonlSinkConfig | None = None, /, *, resume: bool = False, **options: Any) -> None:
        config = configured(JsonlSinkConfig, config, options)
        super().__init__(config, kinds=config.kinds, resume=resume)
        self.written = 0
        self.rotated = 0
        self.skipped = 0  # results a resumed run had already written
        self._held: dict[tuple[str, bool], int] = {}  # (source, is event) -> last frame index in the file
        self._encoder = msgspec.json.Encoder()
        self._file: IO[bytes] | None = None
        self._target = Path(config.path)
        self._size = 0
        self._opened_at = 0.0
        self._flushed_at = 0.0

    @property
    def path(self) -> str:
        return self.config.path

    @property
    def rotates(self) -> bool:
        return self.config.rotate_bytes is not None or self.config.rotate_seconds is not None

    def describe(self) -> str:
        return f"jsonl {self.path}"

    def stats(self) -> dict[str, float]:
        return {"rotations": self.rotated, "skipped": self.skipped}

    async def __aenter__(self) -> JsonlSink:
        await anyio.to_thread.run_sync(self._enter)  # a slow disk or a long file to resume from
        return self

    def _enter(self) -> None:
        self._target = prepare_output(self.path, "jsonl sink")
        with self._translate("open"):
            if self.resume:
                self._held = _last_indexes(self._resumed_file())
            elif self.rotates and self._target.stat().st_size > 0:
                self._rotate_file()
            self._open()

    def _resumed_file(self) -> Path:
        """The file holding the latest lines: the current one, or the newest rotated one if it is empty."""
        self._target.touch()
        _cut_partial_line(self._target)
        if self._target.stat().st_size == 0 and (rotated := self.rotated_files()):
            return rotated[-1]
        return self._target

    async def flush(self) -> None:
        self._flush(durably=False)

    async def idle(self) -> None:
        self._flush(durably=False)  # results stopped coming: the last lines are not left in the buffer

    def flush_to_disk(self) -> None:
        self._flush(durably=True)

    def _flush(self, durably: bool) -> None:
        """The lines written so far to the OS (a small write), and with `durably` to the disk."""
        if self._file is not None:
            with self._translate("flush"):
                self._file.flush()
                if durably:
                    os.fsync(self._file.fileno())
            self._flushed_at = time.monotonic()

    async def __aexit__(self, *exc_info: object) -> None:
        if self._file is not None:
            file, self._file = self._file, None
            with anyio.CancelScope(shield=True):  # closing flushes: let it finish
                await anyio.to_thread.run_sync(file.close)

    async def write(self, result: Item) -> None:
        assert self._file is not None, "write() before the sink was opened"
        if self._held and self._already_written(result):
            self.skipped += 1
            return
        line = self._encoder.encode(result.to_dict(embeddings=self.config.embeddings)) + b"\n"
        with self._translate("write"):
            if self._due(len(line)):
                self._rotate()
            self._file.write(line)
            self._size += len(line)
        if time.monotonic() - self._flushed_at >= FLUSH_EVERY_S:
            self._flush(durably=False)
        self.written += 1

    def _already_written(self, item: Item) -> bool:
        held = self._held.get((item.source_id, isinstance(item, Event)))
        return held is not None and item.frame_index <= held

    def rotated_files(self) -> list[Path]:
        """The rotated files next to the current one, oldest first."""
        return [path for *_, path in self._rotated()]

    def _rotated(self) -> list[tuple[str, int, Path]]:
        """(timestamp, number, path) of each rotated file, sorted oldest first."""
        pattern = re.compile(
            re.escape(self._target.stem) + r"\.(\d{8}T\d{6})(?:-(\d+))?" + re.escape(self._target.suffix) + "$"
        )
        found = []
        for candidate in self._target.parent.iterdir():
            if match := pattern.match(candidate.name):
                found.append((match[1], int(match[2] or 0), candidate))
        return sorted(found)

    def _due(self, line_size: int) -> bool:
        if self._size == 0:
            return False  # never rotate an empty file: every file holds at least one line
        rotate_bytes, rotate_seconds = self.config.rotate_bytes, self.config.rotate_seconds
        too_big = rotate_bytes is not None and self._size + line_size > rotate_bytes
        too_old = rotate_seconds is not None and time.monotonic() - self._opened_at >= rotate_seconds
        return too_big or too_old

    def _rotate(self) -> None:
        assert self._file is not None
        self._file.close()
        try:
            self._rotate_file()
        finally:
            self._open()  # appends to the old file if the rename failed: no line is lost

    def _rotate_file(self) -> None:
        """Rename the closed file at the path to a new rotated name, then prune the oldest."""
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        numbers = [n for when, n, _ in self._rotated() if when == stamp]
        n = max(numbers) + 1 if numbers else 0  # above every number in use, so names sort in order
        name = f"{self._target.stem}.{stamp}{f'-{n}' if n else ''}{self._target.suffix}"
        if (self._target.parent / name).exists():
            raise FileExistsError(errno.EEXIST, "a file with the rotated name exists", name)
        os.rename(self._target, self._target.parent / name)
        self.rotated += 1
        if self.config.keep is not None:
            for old in self.rotated_files()[: -self.config.keep]:
                old.unlink(missing_ok=True)

    def _open(self) -> None:
        # With rotation the path is free or empty here (or its rename failed: then append to it).
        self._file = open(self._target, "ab" if self.rotates or self.resume else "wb")
        self._size = 0
        self._opened_at = self._flushed_at = time.monotonic()

    @contextmanager
    def _translate(self, action: str) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            raise SinkError(f"jsonl sink: cannot {action} {self.path!r}: {exc.strerror or exc}") from exc


class _Line(msgspec.Struct):
    source: str
    frame_index: int
    event: str | None = None


def _cut_partial_line(path: Path) -> None:
    """Truncate `path` after its last complete line (a killed writer may have left half a line)."""
    with open(path, "rb+") as file:
        size = file.seek(0, os.SEEK_END)
        end = size
        while end > 0:
            start = max(0, end - 65536)
            file.seek(start)
            chunk = file.read(end - start)
            newline = chunk.rfind(b"\n")
            if newline >= 0:
                end = start + newline + 1
                break
            end = start
        if end != size:
            file.truncate(end)


def _last_indexes(path: Path) -> dict[tuple[str, bool], int]:
    """The highest frame index per (source, is event) among the lines of a JSONL file."""
    decoder = msgspec.json.Decoder(_Line)
    held: dict[tuple[str, bool], int] = {}
    with open(path, "rb") as file:
        for line in file:
            try:
                seen = decoder.decode(line)
            except msgspec.DecodeError:
                continue  # not a line of ours
            key = (seen.source, seen.event is not None)
            held[key] = max(held.get(key, -1), seen.frame_index)
    return held

