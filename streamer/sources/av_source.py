"""Sources decoded by PyAV (FFmpeg): files, lavfi patterns, RTSP and HLS streams, webcams.

`AvSource.frames` yields decoded frames and, in between, the source's state changes. A live source
that drops, stalls or never comes up is reopened with backoff until its attempts run out; errors no
retry can fix (wrong credentials, no such stream, no such file) fail at once. Credentials never
reach a message: every error text is scrubbed of the URL's password.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator

from ..errors import SourceDecodeError, SourceError, SourceOpenError, SourceRefusedError, SourceStalledError
from ..frames import Frame
from .state import Backoff, SourceState, StateChange
from .urls import mask_url, scrub

log = logging.getLogger(__name__)

MAX_CONSECUTIVE_DECODE_ERRORS = 25


class AvSource:
    """Decode the first video stream of anything FFmpeg can open.

    live: a camera or stream (reconnects with `backoff`, when given). realtime: pace frames to their
    timestamps. loop: start a file again at its end. max_fps: keep at most this many frames a second.
    Timestamps grow across loops and reconnects; a frame without one gets the seconds since its
    connection opened. start_after: resume a file after the frame (index, pts) a checkpoint names:
    seek to the keyframe before it, decode up to it silently, go on numbering from index + 1.
    """

    def __init__(
        self,
        id: str,
        url: str,
        *,
        kind: str = "file",
        format: str | None = None,
        live: bool = False,
        realtime: bool = False,
        loop: bool = False,
        max_frames: int | None = None,
        max_fps: float | None = None,
        options: dict[str, str] | None = None,
        open_timeout_s: float = 10.0,
        read_timeout_s: float = 10.0,
        backoff: Backoff | None = None,
        start_after: tuple[int, float | None] | None = None,
        hwaccel: str | None = None,
    ) -> None:
        self.id = id
        self.url = url
        self.kind = kind
        self.format = format
        self.live = live
        self.realtime = realtime
        self.loop = loop
        self.max_frames = max_frames
        self.max_fps = max_fps
        self.options = options or {}
        self.open_timeout_s = open_timeout_s
        self.read_timeout_s = read_timeout_s
        self.backoff = backoff
        self.start_after = start_after  # (index, pts) of the last frame a previous run delivered
        self.hwaccel = hwaccel  # FFmpeg hardware device type; None once it proved unavailable

    def describe(self) -> str:
        return f"source {self.id!r} ({self.kind} {mask_url(self.url)!r})"

    def frames(self, stop: threading.Event) -> Iterator[Frame | StateChange]:
        timeline = _Timeline(self.max_fps, _Pacer(stop) if self.realtime else None)
        if self.start_after is not None:
            timeline.index = self.start_after[0] + 1
        attempt = 0
        while not stop.is_set():
            yield StateChange(SourceState.CONNECTING, attempt=attempt)
            try:
                for item in self._session(stop, timeline):
                    if isinstance(item, StateChange):
                        attempt = 0
                    yield item
                    if self.max_frames is not None and timeline.index >= self.max_frames:
                        yield StateChange(SourceState.ENDED, "max_frames reached")
                        return
            except SourceRefusedError:
                raise
            except SourceError as exc:
                if not self.retries:
                    raise
                reason = exc.message
            else:
                if stop.is_set() or not (self.live or self.loop):
                    yield StateChange(SourceState.ENDED, "stopped" if stop.is_set() else "end of file")
                    return
                if self.loop and not timeline.session_frames:
                    raise SourceDecodeError(f"{self.describe()}: no frame to loop over")
                if self.loop:
                    continue
                reason = f"{self.describe()}: the stream ended"
            attempt += 1
            yield from self._wait_to_retry(stop, attempt, reason)

    @property
    def retries(self) -> bool:
        """Live sources with a backoff reconnect; files and patterns fail on their first error."""
        return self.live and self.backoff is not None

    def _wait_to_retry(self, stop: threading.Event, attempt: int, reason: str) -> Iterator[StateChange]:
        assert self.backoff is not None
        if self.backoff.exhausted(attempt):
            raise SourceOpenError(f"{self.describe()}: gave up after {attempt} attempts; last error: {reason}")
        delay = self.backoff.delay(attempt)
        yield StateChange(SourceState.RECONNECTING, reason, attempt=attempt, retry_in_s=delay)
        stop.wait(delay)

    def _session(self, stop: threading.Event, timeline: _Timeline) -> Iterator[Frame | StateChange]:
        """One connection: frames until it ends (returns) or breaks (raises a SourceError)."""
        with self._open() as container:
            timeline.new_session(_frame_step(container))
            decoded_frames = self._decode(container, stop)
            if self.start_after is not None and timeline.session == 0:
                decoded_frames = _after(decoded_frames, container, *self.start_after)
            for decoded in decoded_frames:
                pts = timeline.stamp(decoded.time)
                if not timeline.keep(pts):
                    continue
                if timeline.session_frames == 0:
                    yield StateChange(SourceState.RUNNING)
                if not timeline.pace(pts):
                    return
                yield Frame(self.id, timeline.take_index(), pts, time.time(), decoded=decoded, session=timeline.session)

    @contextmanager
    def _open(self) -> Iterator[Any]:
        import av

        try:
            # FFmpeg first returns a partial packet when a read times out, and fails on the next one:
            # half the read timeout per read makes a stalled stream fail after about read_timeout_s.
            container = self._open_container()
        except FileNotFoundError as exc:
            raise SourceRefusedError(f"{self.describe()}: no such file; check the path") from exc
        except (av.error.HTTPUnauthorizedError, av.error.HTTPForbiddenError, PermissionError) as exc:
            raise SourceRefusedError(f"{self.describe()}: credentials refused: {self._scrub(exc)}") from exc
        except av.error.HTTPNotFoundError as exc:
            raise SourceRefusedError(f"{self.describe()}: no such stream (404): {self._scrub(exc)}") from exc
        except ValueError as exc:  # PyAV: unknown format, e.g. a build without v4l2
            raise SourceRefusedError(f"{self.describe()}: {self._scrub(exc)}{_format_hint(self.format)}") from exc
        except (av.error.FFmpegError, OSError) as exc:
            error = SourceOpenError if self.live else SourceRefusedError
            raise error(f"{self.describe()}: cannot open it: {self._scrub(exc)}") from exc
        try:
            if not container.streams.video:
                raise SourceRefusedError(f"{self.describe()}: has no video stream")
            yield container
        finally:
            container.close()

    def _open_container(self) -> Any:
        import av

        timeouts = (self.open_timeout_s, self.read_timeout_s / 2)
        if self.hwaccel is not None:
            from av.codec.hwaccel import HWAccel

            try:
                accel = HWAccel(device_type=self.hwaccel, allow_software_fallback=True)
                return av.open(self.url, format=self.format, options=self.options, timeout=timeouts, hwaccel=accel)
            except (av.error.FFmpegError, OSError, ValueError, NotImplementedError) as exc:
                hardware_error = exc
        else:
            hardware_error = None
        container = av.open(self.url, format=self.format, options=self.options, timeout=timeouts)
        if hardware_error is not None:  # the stream opens without it: the hardware was the problem
            log.warning(
                "%s: hardware decoding with %s is not available here (%s): decoding on the CPU",
                self.describe(), self.hwaccel, self._scrub(hardware_error),
            )
            self.hwaccel = None  # once per source, not at every reconnect
        return container

    def _decode(self, container: Any, stop: threading.Event) -> Iterator[Any]:
        """Decode the first video stream, skipping damaged packets until too many come in a row."""
        import av

        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        _check_decoder(stream, self.describe())
        failures, last_frame = 0, time.monotonic()
        try:
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
                if decoded:
                    last_frame = time.monotonic()
                elif time.monotonic() - last_frame > self.read_timeout_s:
                    raise SourceStalledError(f"{self.describe()}: no frame for {self.read_timeout_s:g} s")
                yield from decoded
        except (av.error.FFmpegError, OSError) as exc:  # the connection dropped or timed out mid-stream
            raise SourceDecodeError(f"{self.describe()}: reading failed: {self._scrub(exc)}") from exc

    def _scrub(self, error: BaseException) -> str:
        return scrub(str(error), self.url)


def _format_hint(format: str | None) -> str:
    if format == "v4l2":
        return "; this PyAV build has no v4l2 input: install PyAV built against the system FFmpeg (pip install av --no-binary av)"
    return ""


def _check_decoder(stream: Any, what: str) -> None:
    try:
        context = stream.codec_context
    except Exception as exc:  # PyAV raises several types here depending on version
        raise SourceRefusedError(f"{what}: no decoder for its video codec: {exc}") from exc
    if context is None or context.codec is None:
        raise SourceRefusedError(f"{what}: no decoder for its video codec")


def _after(decoded: Iterator[Any], container: Any, index: int, pts: float | None) -> Iterator[Any]:
    """The frames after the one at (index, pts): seek to the keyframe before it when the stream has
    timestamps (counting frames from the start when it has none), then skip up to it."""
    stream = container.streams.video[0]
    if pts is not None and stream.time_base:
        container.seek(int(pts / stream.time_base), stream=stream, backward=True)
        return (frame for frame in decoded if frame.time is None or frame.time > pts + 1e-6)
    return itertools.islice(decoded, index + 1, None)


def _frame_step(container: Any) -> float:
    rate = container.streams.video[0].average_rate
    return float(1 / rate) if rate else 1 / 30


class _Timeline:
    """Frame numbering and timestamps across sessions (loops, reconnects), decimation and pacing."""

    def __init__(self, max_fps: float | None, pacer: "_Pacer | None") -> None:
        self.min_gap = 1 / max_fps if max_fps else 0.0
        self.pacer = pacer
        self.index = 0
        self.session = -1  # counts connections (and loops): 0 for the first
        self.session_frames = 0
        self._offset = 0.0
        self._last_pts: float | None = None
        self._last_kept: float | None = None
        self._session_start = time.monotonic()
        self._session_first: float | None = None

    def new_session(self, step: float) -> None:
        first_session = self._last_pts is None
        self.session += 1
        if not first_session:
            self._offset = self._last_pts + step  # type: ignore[operator]
        # The first connection keeps the stream's own timestamps; later ones continue after them.
        self._session_first = 0.0 if first_session else None
        self._session_start, self.session_frames = time.monotonic(), 0
        if self.pacer is not None:
            self.pacer.reset()

    def stamp(self, stream_time: float | None) -> float:
        """Seconds on one growing timeline: stream time from this session's first frame, plus the offset."""
        raw = time.monotonic() - self._session_start if stream_time is None else stream_time
        if self._session_first is None:
            self._session_first = raw
        self._last_pts = self._offset + raw - self._session_first
        return self._last_pts

    def keep(self, pts: float) -> bool:
        if self._last_kept is not None and pts - self._last_kept < self.min_gap - 1e-6:
            return False
        self._last_kept = pts
        return True

    def pace(self, pts: float) -> bool:
        return self.pacer is None or self.pacer.wait_until(pts)

    def take_index(self) -> int:
        index, self.index = self.index, self.index + 1
        self.session_frames += 1
        return index


class _Pacer:
    """Sleep until a frame's timestamp comes due on the wall clock (interruptible by stop)."""

    def __init__(self, stop: threading.Event) -> None:
        self._stop = stop
        self._origin: tuple[float, float] | None = None

    def reset(self) -> None:
        self._origin = None

    def wait_until(self, pts: float) -> bool:
        now = time.monotonic()
        if self._origin is None:
            self._origin = (now, pts)
        due = self._origin[0] + (pts - self._origin[1])
        return not self._stop.wait(max(0.0, due - now))
