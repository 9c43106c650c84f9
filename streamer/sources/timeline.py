"""One growing timeline per source: timestamps across sessions (loops, reconnects) and segments
(timestamps that jump back), decimation to max_fps, and pacing to real time. What it counts (jumps,
frames over max_fps) goes into the source's SourceStats, with every other count of the source.

A frame is never discarded for its timestamp: when a stream's time goes back (two MPEG-TS segments
back to back, a camera whose clock resets, a PTS wrap FFmpeg did not correct), a new segment starts
one frame step after the last timestamp given out, the jump is counted and logged once. A frame
with no timestamp is placed one step after the last one (the session's first, by the time since
connecting); when the next stamped frame comes earlier than that guess (FFmpeg's RTSP reader gives
a stream's first keyframe no time), the guess was wrong, not the stream, and the timeline goes on
from it without counting a jump. Only max_fps skips frames, and counts each one it skips.
"""

from __future__ import annotations

import logging
import threading
import time

from .stats import SourceStats

log = logging.getLogger(__name__)

# Stream times this much earlier than the previous frame's are a jump back, not rounding.
BACKWARDS_TOLERANCE_S = 1e-6


class Timeline:
    """Stamps the frames of one source (`what` names it in the log)."""

    def __init__(self, what: str, stats: SourceStats, max_fps: float | None, pacer: Pacer | None) -> None:
        self.what = what
        self.stats = stats
        self.min_gap = 1 / max_fps if max_fps else 0.0
        self.pacer = pacer
        self._step = 1 / 30
        self._offset = 0.0
        self._last_pts: float | None = None
        self._last_kept: float | None = None
        self._session_start = time.monotonic()
        self._segment_first: float | None = None  # stream time where the current segment starts
        self._last_raw: float | None = None  # this session's latest stream time
        self._last_guessed = False  # whether that time was guessed (its frame had none)

    def new_session(self, step: float) -> None:
        """A new connection (or loop) whose frames are `step` seconds apart."""
        first_session = self._last_pts is None
        self._step = step
        if not first_session:
            self._offset = self._last_pts + step  # type: ignore[operator]
        # The first connection keeps the stream's own timestamps; later ones continue after them.
        self._segment_first = 0.0 if first_session else None
        self._last_raw, self._last_guessed = None, False
        self._session_start = time.monotonic()
        if self.pacer is not None:
            self.pacer.reset()

    def stamp(self, stream_time: float | None) -> float:
        """Seconds on the source's timeline: stream time from the segment's first frame, plus the offset."""
        raw = self._guess() if stream_time is None else stream_time
        if self._segment_first is None:
            self._segment_first = raw
        elif self._last_raw is not None and raw < self._last_raw - BACKWARDS_TOLERANCE_S:
            if self._last_guessed:
                self._go_on_from(raw)
            else:
                self._new_segment(raw)
        self._last_raw, self._last_guessed = raw, stream_time is None
        self._last_pts = self._offset + raw - self._segment_first
        return self._last_pts

    @property
    def step(self) -> float:
        """Seconds between this session's frames (from its frame rate)."""
        return self._step

    def peek(self, stream_time: float) -> float | None:
        """Where `stamp` would put a frame at `stream_time`, without stamping it: None before the
        session's first frame and when the time jumps back (it would start a segment)."""
        if self._segment_first is None or self._last_raw is None or stream_time < self._last_raw - BACKWARDS_TOLERANCE_S:
            return None
        return self._offset + stream_time - self._segment_first

    @property
    def latest(self) -> float | None:
        """The timeline time of the latest frame stamped this session, None before its first."""
        return None if self._last_raw is None else self._last_pts

    def passed(self, stream_time: float) -> None:
        """Frames up to `stream_time` went by undecoded (the session's last ones): the next session
        starts one step after them, as it would had they been decoded and dropped."""
        if self._last_raw is not None and self._segment_first is not None and stream_time > self._last_raw:
            self._last_pts = self._offset + stream_time - self._segment_first
            self._last_raw = stream_time

    def due(self) -> float | None:
        """The timeline time from which `keep` keeps the next frame; None while it keeps any."""
        if not self.min_gap or self._last_kept is None:
            return None
        return self._last_kept + self.min_gap - 1e-6

    def keep(self, pts: float) -> bool:
        """Whether max_fps keeps the frame at `pts`; a skipped frame is counted."""
        due = self.due()
        if due is not None and pts < due:
            self.stats.over_max_fps += 1
            return False
        self._last_kept = pts
        return True

    def pace(self, pts: float) -> bool:
        return self.pacer is None or self.pacer.wait_until(pts)

    def _guess(self) -> float:
        """A stream time for a frame that has none: one step after the session's latest, or the
        time since connecting for its first."""
        if self._last_raw is None:
            return time.monotonic() - self._session_start
        return self._last_raw + self._step

    def _go_on_from(self, raw: float) -> None:
        """A segment starting at stream time `raw`, one step after the last timestamp given out."""
        assert self._last_pts is not None
        self._offset, self._segment_first = self._last_pts + self._step, raw

    def _new_segment(self, raw: float) -> None:
        assert self._last_raw is not None
        self._go_on_from(raw)
        self.stats.discontinuities += 1
        log.warning(
            "%s: its timestamps jumped back from %.3f s to %.3f s; its frames go on at %.3f s",
            self.what, self._last_raw, raw, self._offset,
        )


class Pacer:
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
