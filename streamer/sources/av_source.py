"""Sources decoded by PyAV (FFmpeg): files, lavfi patterns, RTSP and HLS streams, webcams.

`AvSource(config).frames` yields decoded frames and, in between, the source's state changes, as
the machine below moves. What it counts on the way (attempts, outages, frames, decode errors,
timestamp jumps, frames over max_fps) is in its `stats` (stats.py), the one place for its counts.
Only errors no retry can fix (wrong credentials, no such stream, no such file) fail a live source at
once: failures.py decides which is which. A file that ends with decode errors or short of the
frames its container declares says so in `stats.damage`. Credentials never reach a message: every
error text goes through `redact` (streamer/redact.py).

                   open ok, first frame
    CONNECTING -----------------------------> RUNNING -- EOF of a file or pattern, max_frames --> ENDED
     |  ^  ^                                   |  |
     |  |  +------ EOF of a looping file ------+  |
     |  |                                         | read timeout, stream broke, EOF (live)
     |  +-- backoff waited -- RECONNECTING <------+
     |                          ^      |
     +-- open failed (live) ----+      +-- attempts exhausted (max_attempts) --> FAILED
     |                                                                             ^
     +-- open refused; any error of a file or pattern (from RUNNING too) ---------+

    stop, in any state: ENDED ("stopped").
    RUNNING <-> PAUSED: pause and resume by the admin API, kept by SourceSet (pipeline/readers.py):
    a file waits where it is, a live source stays connected and its frames are discarded.

A live source retries (backoff_initial_s .. backoff_max_s, up to max_attempts failures in a row;
the failure that uses the last attempt up goes to FAILED at once, without reporting RECONNECTING);
a file or lavfi pattern has no outages, every error fails it. FAILED is the end of `frames`: it
raises the SourceError, and the pipeline reports the state with its message.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from contextlib import contextmanager
from typing import Any, Generator, Iterator, NamedTuple

from ..backoff import Backoff
from ..config.loader import checked_struct
from ..config.schema import (
    FileSourceConfig,
    HlsSourceConfig,
    LavfiSourceConfig,
    LiveSourceConfigBase,
    RtspSourceConfig,
    SourceConfig,
    WebcamSourceConfig,
)
from ..errors import ConfigError, SourceDecodeError, SourceError, SourceOpenError, SourceRefusedError
from ..frames import Frame
from ..redact import redact, redact_url
from .address import address
from .catch_up import CatchUp, behind_live_limit
from .decode_skip import DecodeSkipper
from .failures import open_failure, read_failure, stalled
from .hwaccel import HardwareDecoding
from .state import SourceState, StateChange
from .stats import SourceStats
from .timeline import Pacer, Timeline

log = logging.getLogger(__name__)

MAX_CONSECUTIVE_DECODE_ERRORS = 25
# Frames a file may decode fewer than it declares before it counts as cut short: a few when the
# container counts its frames (an edit list may hide one or two), a tenth more when only its
# duration and frame rate tell.
MISSING_FRAMES_COUNTED = 2
MISSING_SHARE_ESTIMATED = 0.1
# How long FFmpeg may wait to open or read a file or a pattern (they have no timeouts to configure).
LOCAL_TIMEOUT_S = 10.0

Items = Generator["Frame | StateChange", None, "_Move"]


class _Move(NamedTuple):
    """A transition: the state it goes to, why, and for FAILED the error that ends the source."""

    to: SourceState
    reason: str | None = None
    error: SourceError | None = None


class AvSource:
    """Decode the first video stream of anything FFmpeg can open, as its config table describes.

    Timestamps grow across loops, reconnects and jumps back (see timeline.py); a frame without one
    gets the seconds since its connection opened. start_after: resume a file after the frame
    (index, pts) a checkpoint names: seek to the keyframe before it, decode up to it silently, go on
    numbering from index + 1. One read may block for half of read_timeout_s (see _open_container);
    HLS waits up to a segment's length inside one read for its playlist to grow, so it is given the
    whole read timeout.
    """

    def __init__(self, config: SourceConfig, *, start_after: tuple[int, float | None] | None = None) -> None:
        config = checked_struct(config)  # built in Python, it is checked as TOML would be
        if config.id is None:
            raise ConfigError("a source built in Python needs an `id`", "$.id")
        if start_after is not None and not isinstance(config, FileSourceConfig):
            raise TypeError(f"only file sources resume from a checkpoint, not {type(config).__name__}")
        self.config = config
        self.id: str = config.id
        self.url, self.kind, self.format, self.options = address(config)
        self.live = not isinstance(config, FileSourceConfig)
        # A camera that sends in real time (RTSP, a webcam) under `latest`: files, generated patterns
        # and HLS (whose segments come whole, each frame of one as late as its length) take every frame.
        self.catches_up = isinstance(config, (RtspSourceConfig, WebcamSourceConfig)) and config.policy == "latest"
        live = config if isinstance(config, LiveSourceConfigBase) else None
        self.backoff = Backoff(live.backoff_initial_s, live.backoff_max_s, live.max_attempts) if live else None
        self.open_timeout_s = live.open_timeout_s if live else LOCAL_TIMEOUT_S
        self.read_timeout_s = live.read_timeout_s if live else LOCAL_TIMEOUT_S
        self.read_wait_s = self.read_timeout_s if isinstance(config, HlsSourceConfig) else self.read_timeout_s / 2
        self.start_after = start_after  # (index, pts) of the last frame a previous run delivered
        self.stats = SourceStats()
        self.hardware = HardwareDecoding(config.hwaccel, config.hwaccel_device, self.stats, self.describe(), self._scrub)

    @property
    def hwaccel(self) -> str | None:
        """FFmpeg hardware device type it decodes with; None when not asked for or proved unavailable."""
        return self.hardware.device_type

    @property
    def realtime(self) -> bool:
        """Paced to its timestamps (files and patterns may be; a live stream comes at its own pace)."""
        return isinstance(self.config, (FileSourceConfig, LavfiSourceConfig)) and self.config.realtime

    @property
    def loop(self) -> bool:
        return isinstance(self.config, FileSourceConfig) and self.config.loop

    def describe(self) -> str:
        return f"source {self.id!r} ({self.kind} {redact_url(self.url)!r})"

    def frames(self, stop: threading.Event) -> Iterator[Frame | StateChange]:
        """Run the machine drawn in the module's docstring, from CONNECTING to ENDED or FAILED."""
        timeline = Timeline(self.describe(), self.stats, self.config.max_fps, Pacer(stop) if self.realtime else None)
        move = _Move(SourceState.CONNECTING)
        while True:
            if stop.is_set() and not move.to.final:
                move = _Move(SourceState.ENDED, "stopped")
            if move.to is SourceState.CONNECTING:
                move = yield from self._connecting(stop, timeline)
            elif move.to is SourceState.RECONNECTING:
                move = yield from self._reconnecting(stop, move.reason)
            elif move.to is SourceState.ENDED:
                yield StateChange(SourceState.ENDED, move.reason)
                return
            else:
                assert move.to is SourceState.FAILED and move.error is not None
                raise move.error

    def _connecting(self, stop: threading.Event, timeline: Timeline) -> Items:
        """CONNECTING, and RUNNING from its first frame: one connection (or one pass over a file)."""
        yield StateChange(SourceState.CONNECTING, attempt=self.stats.failures)
        self.stats.attempts += 1
        frames_before = self.stats.frames
        try:
            yield from self._session(stop, timeline)
        except SourceError as exc:
            if isinstance(exc, SourceRefusedError) or self.backoff is None:
                return _Move(SourceState.FAILED, error=exc)
            return self._retry(exc.message)
        return self._at_end(stop, self.stats.frames - frames_before)

    def _at_end(self, stop: threading.Event, delivered: int) -> _Move:
        """Where a connection that ended without an error goes; `delivered`: the frames it gave out."""
        if stop.is_set():
            return _Move(SourceState.ENDED, "stopped")
        if self._reached_max_frames():
            return _Move(SourceState.ENDED, "max_frames reached")
        if self.loop and not delivered:
            return _Move(SourceState.FAILED, error=SourceDecodeError(f"{self.describe()}: no frame to loop over"))
        if self.loop:
            return _Move(SourceState.CONNECTING)  # the next pass
        if not self.live:
            damage = self.stats.damage
            return _Move(SourceState.ENDED, f"end of file, {damage}" if damage else "end of file")
        if self.backoff is None:  # a lavfi pattern with a duration
            return _Move(SourceState.ENDED, "end of stream")
        return self._retry(f"{self.describe()}: the stream ended")

    def _retry(self, reason: str) -> _Move:
        """A live source's failed attempt: RECONNECTING, or FAILED once max_attempts are used up."""
        assert self.backoff is not None
        self.stats.failures += 1
        if self.backoff.exhausted(self.stats.failures):
            message = f"{self.describe()}: gave up after {self.stats.failures} attempts; last error: {reason}"
            return _Move(SourceState.FAILED, error=SourceOpenError(message))
        return _Move(SourceState.RECONNECTING, reason)

    def _reconnecting(self, stop: threading.Event, reason: str | None) -> Items:
        """RECONNECTING: wait out the backoff (stop ends the wait), then connect again."""
        assert self.backoff is not None
        if self.stats.failures == 1:  # the first failure since it last ran (or ever): an outage begins
            self.stats.reconnects += 1
        delay = self.backoff.delay(self.stats.failures)
        yield StateChange(SourceState.RECONNECTING, reason, attempt=self.stats.failures, retry_in_s=delay)
        stop.wait(delay)
        return _Move(SourceState.CONNECTING)

    def _session(self, stop: threading.Event, timeline: Timeline) -> Iterator[Frame | StateChange]:
        """One connection: frames until it ends (returns) or breaks (raises a SourceError); it is
        RUNNING from its first frame on, and a failure before that is not counted as running."""
        with self._open() as container:
            self.stats.sessions += 1
            timeline.new_session(_frame_step(container))
            tally = _FileTally(container.streams.video[0], self.stats)
            catch_up = self._catch_up(container, timeline)
            decoded_frames = tally.count(self._decode(container, stop, timeline, catch_up))
            if self.start_after is not None and self.stats.sessions == 1:
                decoded_frames = _after(decoded_frames, container, *self.start_after)
            running = False
            for decoded in decoded_frames:
                pts = timeline.stamp(decoded.time)
                if not timeline.keep(pts):
                    continue
                if not running:
                    running, self.stats.failures = True, 0
                    yield StateChange(SourceState.RUNNING)
                if not timeline.pace(pts):
                    return
                yield self._frame(decoded, pts, catch_up)
                if self._reached_max_frames():
                    return
            if not (self.live or stop.is_set()):
                self._note_damage(tally.damage(self.stats))

    def _catch_up(self, container: Any, timeline: Timeline) -> CatchUp | None:
        """The clock and catch-up (catch_up.py) of a source that `catches_up`; None for the rest."""
        if not self.catches_up:
            return None
        limit_s = behind_live_limit(self.config.latency_budget_ms)
        return CatchUp(container.streams.video[0], timeline, self.stats, limit_s)

    def _frame(self, decoded: Any, pts: float, catch_up: CatchUp | None) -> Frame:
        """The frame, stamped with its capture time: a live source's as its stream's clock tells
        (catch_up.py), so time spent behind live counts against its latency budget; else now."""
        self.hardware.check(decoded)  # a connection's first frame tells whether FFmpeg fell back
        index = self._next_index()
        self.stats.frames += 1
        now = time.time()
        captured = now if catch_up is None else catch_up.captured(pts, now)
        return Frame(self.id, index, pts, captured, decoded=decoded, session=self.stats.sessions - 1)

    def _next_index(self) -> int:
        """Frames are numbered on from a checkpoint's frame, across loops and reconnects."""
        first = 0 if self.start_after is None else self.start_after[0] + 1
        return first + self.stats.frames

    def _reached_max_frames(self) -> bool:
        return self.config.max_frames is not None and self._next_index() >= self.config.max_frames

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
        # With hwaccel, hwaccel.py opens it: the source's GPU and primary context, capped decode
        # threads, and only a hardware failure (not a network one) turning the hardware off.
        return self.hardware.open(
            lambda accel: av.open(self.url, format=self.format, options=self.options, timeout=timeouts, hwaccel=accel)
        )

    def _decode(
        self, container: Any, stop: threading.Event, timeline: Timeline, catch_up: CatchUp | None
    ) -> Iterator[Any]:
        """Decode the first video stream, counting damaged packets (skipped until too many come in a
        row) and the frames the decoder marks corrupt; packets whose frames max_fps would drop, and
        that no kept frame needs, are not decoded (decode_skip.py)."""
        import av

        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        _check_decoder(stream, self.describe())
        if (threads := decode_threads(self.config)) is not None and not stream.codec_context.is_hwaccel:
            stream.codec_context.thread_count = threads  # before the codec opens, at the first packet
        skipper = DecodeSkipper(stream, timeline) if timeline.min_gap else None
        failures, last_frame = 0, time.monotonic()
        try:
            for packet in container.demux(stream):
                if stop.is_set():
                    return
                if catch_up is not None and catch_up.skip(packet):
                    if not catch_up.overdue(packet):
                        last_frame = time.monotonic()  # the stream is flowing
                    elif time.monotonic() - last_frame > self.read_timeout_s:
                        raise stalled(self, time.monotonic() - last_frame)
                    continue
                if skipper is not None and packet.size and skipper.skip(packet):
                    self.stats.over_max_fps += 1  # dropped by max_fps as the timeline would, undecoded
                    self.stats.skipped_before_decode += 1
                    last_frame = time.monotonic()  # the stream is flowing
                    continue
                try:
                    decoded = packet.decode()
                except av.error.FFmpegError as exc:
                    self.stats.decode_errors += 1
                    failures += 1
                    if failures >= MAX_CONSECUTIVE_DECODE_ERRORS:
                        message = f"{self.describe()}: {failures} packets in a row failed: {exc}"
                        raise SourceDecodeError(message) from exc
                    continue
                failures = 0
                self.stats.decode_errors += sum(frame.is_corrupt for frame in decoded)  # concealed, still shown
                if decoded:
                    last_frame = time.monotonic()
                    if catch_up is not None:
                        catch_up.decoded(decoded[-1].time, time.time())
                elif time.monotonic() - last_frame > self.read_timeout_s:
                    raise stalled(self, time.monotonic() - last_frame)
                yield from decoded
            if skipper is not None:
                skipper.finish()
        except (av.error.FFmpegError, OSError) as exc:  # the connection dropped or timed out mid-stream
            raise read_failure(exc, self, self._scrub(exc), time.monotonic() - last_frame) from exc

    def _scrub(self, error: BaseException) -> str:
        return redact(str(error), self.url)


def _format_hint(format: str | None) -> str:
    if format == "v4l2":
        return (
            "; this PyAV build has no v4l2 input: install PyAV built against the system FFmpeg"
            " (pip install av --no-binary av)"
        )
    return ""


def decode_threads(config: SourceConfig) -> int | None:
    """The CPU decode threads the source's config asks for; None: FFmpeg's own (one per core).
    "auto" gives a `latest` source one and leaves a `block` one to FFmpeg (see `decode_threads`
    in the config schema)."""
    if config.decode_threads != "auto":
        return config.decode_threads
    return 1 if config.policy == "latest" else None


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

    def __init__(self, stream: Any, stats: SourceStats) -> None:
        self.declared = _declared_frames(stream)
        self.rate = float(stream.average_rate or 0)
        start = stream.start_time if stream.start_time is not None and stream.time_base else 0
        self.start_s = float(start * stream.time_base) if start else 0.0
        self.errors_before = stats.decode_errors
        self.skipped_before = stats.skipped_before_decode  # never decoded, yet not missing
        self.decoded = 0
        self.before_first = 0

    def count(self, frames: Iterator[Any]) -> Iterator[Any]:
        for frame in frames:
            if self.decoded == 0 and frame.time is not None:
                self.before_first = max(0, round((frame.time - self.start_s) * self.rate))
            self.decoded += 1
            yield frame

    def damage(self, stats: SourceStats) -> str | None:
        """Why the pass is incomplete (`stats`: the source's counts now), or None."""
        problems = []
        seen = self.before_first + self.decoded + stats.skipped_before_decode - self.skipped_before
        if self.declared is not None and seen < self.declared[0] - self.declared[1]:
            problems.append(f"decoded {seen} of the {self.declared[0]} frames it declares")
        errors = stats.decode_errors - self.errors_before
        if errors:
            problems.append(f"{errors} decode error{'s' if errors > 1 else ''}")
        return f"damaged: {', '.join(problems)}" if problems else None

