"""Sources decoded by PyAV (FFmpeg): files, lavfi patterns, RTSP and HLS streams, webcams.

`AvSource.frames` yields decoded frames and, in between, the source's state changes; what it counts
on the way (attempts, outages, decode errors, timestamp jumps, frames over max_fps) is in its
`stats`. A live source that drops, stalls, freezes or never comes up is reopened with backoff until
its attempts run out; only errors no retry can fix (wrong credentials, no such stream, no such
file) fail at once: failures.py decides which is which. A file that ends with decode errors or
short of the frames its container declares says so in `stats.damage`. Credentials never reach a
message: every error text goes through `redact` (streamer/redact.py).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator

from ..errors import SourceDecodeError, SourceError, SourceOpenError, SourceRefusedError
from ..frames import Frame
from ..redact import redact, redact_url
from .failures import open_failure, read_failure, stalled
from .state import Backoff, SourceState, StateChange
from .stats import SourceStats
from .timeline import Pacer, Timeline

log = logging.getLogger(__name__)

MAX_CONSECUTIVE_DECODE_ERRORS = 25
# Frames a file may decode fewer than it declares before it counts as cut short: a few when the
# container counts its frames (an edit list may hide one or two), a tenth more when only its
# duration and frame rate tell.
MISSING_FRAMES_COUNTED = 2
MISSING_SHARE_ESTIMATED = 0.1


class AvSource:
    """Decode the first video stream of anything FFmpeg can open.

    live: a camera or stream (reconnects with `backoff`, when given). realtime: pace frames to their
    timestamps. loop: start a file again at its end. max_fps: keep at most this many frames a second.
    Timestamps grow across loops, reconnects and jumps back (see timeline.py); a frame without one
    gets the seconds since its connection opened. start_after: resume a file after the frame
    (index, pts) a checkpoint names: seek to the keyframe before it, decode up to it silently, go on
    numbering from index + 1. read_wait_s: the longest one read may block (default half of
    read_timeout_s, see _open_container); HLS waits up to a segment's length inside one read for its
    playlist to grow, so it is given the whole read timeout.
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
        read_wait_s: float | None = None,
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
        self.read_wait_s = read_timeout_s / 2 if read_wait_s is None else read_wait_s
        self.backoff = backoff
        self.start_after = start_after  # (index, pts) of the last frame a previous run delivered
        self.hwaccel = hwaccel  # FFmpeg hardware device type; None once it proved unavailable
        self.stats = SourceStats()

    def describe(self) -> str:
        return f"source {self.id!r} ({self.kind} {redact_url(self.url)!r})"

    def frames(self, stop: threading.Event) -> Iterator[Frame | StateChange]:
        timeline = Timeline(self.describe(), self.stats, self.max_fps, Pacer(stop) if self.realtime else None)
        if self.start_after is not None:
            timeline.index = self.start_after[0] + 1
        attempt = 0  # failed attempts since the source last ran
        while not stop.is_set():
            yield StateChange(SourceState.CONNECTING, attempt=attempt)
            self.stats.attempts += 1
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
                    yield StateChange(SourceState.ENDED, self._end_reason(stop))
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

    def _end_reason(self, stop: threading.Event) -> str:
        if stop.is_set():
            return "stopped"
        return f"end of file, {self.stats.damage}" if self.stats.damage else "end of file"

    def _wait_to_retry(self, stop: threading.Event, attempt: int, reason: str) -> Iterator[StateChange]:
        assert self.backoff is not None
        if self.backoff.exhausted(attempt):
            raise SourceOpenError(f"{self.describe()}: gave up after {attempt} attempts; last error: {reason}")
        if attempt == 1:  # the first failure since it last ran (or ever): an outage begins
            self.stats.reconnects += 1
        delay = self.backoff.delay(attempt)
        yield StateChange(SourceState.RECONNECTING, reason, attempt=attempt, retry_in_s=delay)
        stop.wait(delay)

    def _session(self, stop: threading.Event, timeline: Timeline) -> Iterator[Frame | StateChange]:
        """One connection: frames until it ends (returns) or breaks (raises a SourceError)."""
        with self._open() as container:
            timeline.new_session(_frame_step(container))
            tally = _FileTally(container.streams.video[0], self.stats.decode_errors)
            decoded_frames = tally.count(self._decode(container, stop))
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
            if not (self.live or stop.is_set()):
                self._note_damage(tally.damage(self.stats.decode_errors))

    def _note_damage(self, damage: str | None) -> None:
        if damage is not None:
            self.stats.damage = damage
            log.warning("%s: %s", self.describe(), damage)

    @contextmanager
    def _open(self) -> Iterator[Any]:
        import av

        started = time.monotonic()
        try:
            container = self._open_container()
        except (av.error.FFmpegError, OSError, ValueError) as exc:  # failures.py says what each one means
            elapsed = time.monotonic() - started
            raise open_failure(exc, self, self._scrub(exc), elapsed, _format_hint(self.format)) from exc
        try:
            if not container.streams.video:
                raise SourceRefusedError(f"{self.describe()}: has no video stream")
            yield container
        finally:
            container.close()

    def _open_container(self) -> Any:
        import av

        # FFmpeg first returns a partial packet when a read times out, and fails on the next one:
        # half the read timeout per read makes a stalled stream fail after about read_timeout_s.
        timeouts = (self.open_timeout_s, self.read_wait_s)
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
        """Decode the first video stream, counting damaged packets (skipped until too many come in a
        row) and the frames the decoder marks corrupt."""
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
                    self.stats.decode_errors += 1
                    failures += 1
                    if failures >= MAX_CONSECUTIVE_DECODE_ERRORS:
                        raise SourceDecodeError(f"{self.describe()}: {failures} packets in a row failed: {exc}") from exc
                    continue
                failures = 0
                self.stats.decode_errors += sum(frame.is_corrupt for frame in decoded)  # concealed, still shown
                if decoded:
                    last_frame = time.monotonic()
                elif time.monotonic() - last_frame > self.read_timeout_s:
                    raise stalled(self, time.monotonic() - last_frame)
                yield from decoded
        except (av.error.FFmpegError, OSError) as exc:  # the connection dropped or timed out mid-stream
            raise read_failure(exc, self, self._scrub(exc), time.monotonic() - last_frame) from exc

    def _scrub(self, error: BaseException) -> str:
        return redact(str(error), self.url)


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


def _declared_frames(stream: Any) -> tuple[int, int] | None:
    """(frames a video stream declares, how many fewer still pass), when its container says."""
    if stream.frames:
        return stream.frames, MISSING_FRAMES_COUNTED
    if stream.duration and stream.time_base and stream.average_rate:
        estimate = round(float(stream.duration * stream.time_base * stream.average_rate))
        return estimate, max(MISSING_FRAMES_COUNTED, round(estimate * MISSING_SHARE_ESTIMATED))
    return None


class _FileTally:
    """What one pass over a file decoded, against what its container declares. A resumed file starts
    at a keyframe after a seek: the frames before its first one are reckoned from that one's time."""

    def __init__(self, stream: Any, decode_errors: int) -> None:
        self.declared = _declared_frames(stream)
        self.rate = float(stream.average_rate or 0)
        start = stream.start_time if stream.start_time is not None and stream.time_base else 0
        self.start_s = float(start * stream.time_base) if start else 0.0
        self.errors_before = decode_errors
        self.decoded = 0
        self.before_first = 0

    def count(self, frames: Iterator[Any]) -> Iterator[Any]:
        for frame in frames:
            if self.decoded == 0 and frame.time is not None:
                self.before_first = max(0, round((frame.time - self.start_s) * self.rate))
            self.decoded += 1
            yield frame

    def damage(self, decode_errors: int) -> str | None:
        """Why the pass is incomplete (`decode_errors`: the source's count now), or None."""
        problems = []
        seen = self.before_first + self.decoded
        if self.declared is not None and seen < self.declared[0] - self.declared[1]:
            problems.append(f"decoded {seen} of the {self.declared[0]} frames it declares")
        errors = decode_errors - self.errors_before
        if errors:
            problems.append(f"{errors} decode error{'s' if errors > 1 else ''}")
        return f"damaged: {', '.join(problems)}" if problems else None

