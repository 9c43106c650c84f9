"""JSONL sink: one JSON object per frame, per line."""

from __future__ import annotations

import time
from typing import IO

import msgspec

from ..errors import SinkError
from ..frames import Result
from .base import SinkBase
from .files import prepare_output


FLUSH_EVERY_S = 0.25


class JsonlSink(SinkBase):
    """Lines are flushed to the OS at least every quarter second, and on close."""

    def __init__(self, path: str, *, sources: list[str] | None = None, queue_size: int = 64) -> None:
        super().__init__(sources, queue_size)
        self.path = path
        self.written = 0
        self._encoder = msgspec.json.Encoder()
        self._file: IO[bytes] | None = None
        self._flushed_at = 0.0

    def describe(self) -> str:
        return f"jsonl {self.path}"

    async def __aenter__(self) -> JsonlSink:
        target = prepare_output(self.path, "jsonl sink")
        self._file = open(target, "wb")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    async def write(self, result: Result) -> None:
        assert self._file is not None, "write() before the sink was opened"
        try:
            self._file.write(self._encoder.encode(result.to_dict()) + b"\n")
            if time.monotonic() - self._flushed_at >= FLUSH_EVERY_S:
                self._file.flush()
                self._flushed_at = time.monotonic()
        except OSError as exc:
            raise SinkError(f"jsonl sink: cannot write {self.path!r}: {exc.strerror}") from exc
        self.written += 1
