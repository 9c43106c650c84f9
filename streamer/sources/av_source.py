"""Sources decoded by PyAV (FFmpeg): video files and lavfi test patterns."""

from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator

from ..errors import SourceDecodeError, SourceOpenError
from ..frames import Frame

log = logging.getLogger(__name__)

MAX_CONSECUTIVE_DECODE_ERRORS = 25


class AvSource:
    """Decode the first video stream of anything FFmpeg can open.

    realtime: pace frames to their timestamps (a file behaves like a camera).
    loop: start again at the end (timestamps keep growing).
    """

    def __init__(
        self,
        id: str,
        url: str,
        *,
        format: str | None = None,
        live: bool = False,
        realtime: bool = False,
        loop: bool = False,
        max_frames: int | None = None,
        options: dict[str, str] | None = None,
    ) -> None:
        self.id = id
        self.url = url
        self.format = format
        self.live = live
        self.realtime = realtime
        self.loop = loop
        self.max_frames = max_frames
        self.options = options or {}

    def describe(self) -> str:
        kind = "lavfi graph" if self.format == "lavfi" else "file"
        return f"source {self.id!r} ({kind} {self.url!r})"

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        index, pts_offset = 0, 0.0
        clock = _Pacer(stop) if self.realtime else None
        while not stop.is_set():
            last_pts = None
            with self._open() as container:
                for decoded in self._decode(container, stop):
                    pts = None if decoded.time is None else decoded.time + pts_offset
                    if clock is not None and pts is not None and not clock.wait_until(pts):
                        return
                    yield Frame(self.id, index, pts, time.time(), decoded=decoded)
                    last_pts, index = pts, index + 1
                    if self.max_frames is not None and index >= self.max_frames:
                        return
                step = _frame_step(container)
            if not self.loop or index == 0:
                return
            pts_offset = (last_pts or pts_offset) + step

    @contextmanager
    def _open(self) -> Iterator[Any]:
        import av

        try:
            container = av.open(self.url, format=self.format, options=self.options, timeout=10.0)
        except FileNotFoundError as exc:
            raise SourceOpenError(f"{self.describe()}: no such file; check the path") from exc
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            raise SourceOpenError(f"{self.describe()}: cannot open it: {exc}") from exc
        try:
            if not container.streams.video:
                raise SourceOpenError(f"{self.describe()}: has no video stream")
            yield container
        finally:
            container.close()

    def _decode(self, container: Any, stop: threading.Event) -> Iterator[Any]:
        """Decode the first video stream, skipping damaged packets until too many come in a row."""
        import av

        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        _check_decoder(stream, self.describe())
        failures = 0
        for packet in container.demux(stream):
            if stop.is_set():
                return
            try:
                decoded = packet.decode()
            except av.error.FFmpegError as exc:
                failures += 1
                if failures >= MAX_CONSECUTIVE_DECODE_ERRORS:
                    raise SourceDecodeError(f"{self.describe()}: {failures} packets in a row failed: {exc}") from exc
                continue
            failures = 0
            yield from decoded


def _check_decoder(stream: Any, what: str) -> None:
    try:
        stream.codec_context  # noqa: B018  (raises when FFmpeg has no decoder for the codec)
    except Exception as exc:  # PyAV raises several types here depending on version
        raise SourceOpenError(f"{what}: no decoder for its video codec: {exc}") from exc
    if stream.codec_context is None or stream.codec_context.codec is None:
        raise SourceOpenError(f"{what}: no decoder for its video codec")


def _frame_step(container: Any) -> float:
    rate = container.streams.video[0].average_rate
    return float(1 / rate) if rate else 1 / 30


class _Pacer:
    """Sleep until a frame's timestamp comes due on the wall clock (interruptible by stop)."""

    def __init__(self, stop: threading.Event) -> None:
        self._stop = stop
        self._origin: tuple[float, float] | None = None

    def wait_until(self, pts: float) -> bool:
        now = time.monotonic()
        if self._origin is None:
            self._origin = (now, pts)
        due = self._origin[0] + (pts - self._origin[1])
        return not self._stop.wait(max(0.0, due - now))
