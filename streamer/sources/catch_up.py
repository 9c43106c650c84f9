"""Catching up with a camera the machine could not decode in time (RTSP and webcams, under `latest`).

A camera sends in real time whatever the reader does. When decoding falls behind (more cameras than
the cores can decode, a burst of load), the packets wait in the socket and the server's buffers and
every frame after them comes later: the lag grows without bound and no queue policy can help, since
the frames are late before they reach one. `CatchUp` measures how far the decoded frames run behind
the stream's own clock, and once that is over its limit (`behind_live_limit`) it has the source
read on without decoding up to the next keyframe (an IDR for H.264 and HEVC), where decoding starts afresh: no frame
is ever decoded against a missing reference. Reading a packet costs next to nothing beside decoding
it, so each skip wins back most of a GOP, and the source is live again within a few. The frames not
decoded are counted in `stats.behind_live`. Intra-only codecs (MJPEG) have no GOP to skip and are
left to their queue; a stream that has shown no keyframe is never skipped, and when the keyframe a
skip waits for is overdue (`overdue`), the source stops counting the stream as flowing, so its read
timeout reconnects (a new connection starts at a keyframe) rather than skipping for ever.

The lag is how much later a frame is decoded than the frame of the connection that came soonest,
by their timestamps (on the source's Timeline, which carries pts on over a jump back): wall time
minus pts, less the smallest such difference seen. A skip that wins nothing back (the keyframe
came no sooner than the frames before it) was no backlog but the stream's clock moving against the
wall clock (a camera that paused its clock with its sending): the measure then starts afresh there.
The same clock stamps each frame's capture time (`captured`), so the time a frame spent behind
live counts against its latency budget like the time it waits for a worker.

The limit is half the source's latency budget, leaving the other half for the queue and the
model, and never under `BEHIND_LIVE_FLOOR_S` (the jitter of a network and of a decoder waiting its
turn for a core), which is also the limit under budget "auto" (tens of milliseconds: far less than
such jitter). docs/batching.md gives the figures against the fixed 1 s limit it replaced.
"""

from __future__ import annotations

from typing import Any, Literal

from .decode_skip import PacketKinds
from .stats import SourceStats
from .timeline import Timeline

BEHIND_LIVE_FLOOR_S = 0.5  # the least lag that reads on to the next keyframe
OVERDUE_S = 5.0  # a keyframe this much later than the last, the GOP still unknown, is overdue


def behind_live_limit(latency_budget_ms: float | Literal["auto"]) -> float:
    """How far behind its stream, in seconds, a camera's decoded frames may run before it reads on
    to the next keyframe: half its latency budget, at least BEHIND_LIVE_FLOOR_S."""
    if latency_budget_ms == "auto":
        return BEHIND_LIVE_FLOOR_S
    return max(BEHIND_LIVE_FLOOR_S, latency_budget_ms / 2000)


class CatchUp:
    """For one connection: `decoded` hears of each decoded frame, `skip` says which packets to leave
    undecoded (those before the next keyframe, while behind)."""

    def __init__(self, stream: Any, timeline: Timeline, stats: SourceStats, limit_s: float = BEHIND_LIVE_FLOOR_S) -> None:
        self.kinds = PacketKinds(stream)
        self.timeline = timeline
        self.stats = stats
        self.limit_s = limit_s
        self.offset: float | None = None  # the smallest wall time - pts seen
        self.behind = False
        self.fell_behind_at = (0.0, 0.0)  # (pts, wall time) of the frame it last fell behind at
        self.skipped = 0  # packets left undecoded since the last decoded frame
        self.discontinuities = stats.discontinuities
        self.keyframes = 0  # read this connection
        self.last_keyframe: float | None = None  # timeline time of the last keyframe read
        self.gop: float | None = None  # seconds between the last two keyframes

    def decoded(self, stream_time: float | None, now: float) -> None:
        """A frame at `stream_time` (its pts in seconds) came out of the decoder at wall time `now`."""
        pts = None if stream_time is None else self.timeline.peek(stream_time)
        if pts is None:  # no timestamp, the session's first frame, or a jump back (a new segment)
            return
        gap = now - pts
        if self.stats.discontinuities != self.discontinuities:  # the timeline carried pts over a jump
            self.discontinuities, self.offset = self.stats.discontinuities, None
        if self.offset is None or gap < self.offset or (self.skipped and self._won_nothing(pts, now)):
            self.offset = gap
        self.skipped = 0
        self.behind = gap - self.offset > self.limit_s
        if self.behind:
            self.fell_behind_at = (pts, now)

    def _won_nothing(self, pts: float, now: float) -> bool:
        """Whether the skip that ends at this frame took about as long as the stream time it
        spanned: the packets came as fast as the stream goes, so there was no backlog to win."""
        spanned, took = pts - self.fell_behind_at[0], now - self.fell_behind_at[1]
        return spanned >= self.limit_s / 2 and took > spanned / 2

    def captured(self, pts: float, now: float) -> float:
        """When the frame at timeline time `pts`, handed over at `now`, was captured, as far as the
        stream tells: the soonest frame's wall time - pts, plus pts (now until that is known)."""
        return now if self.offset is None else min(now, self.offset + pts)

    def skip(self, packet: Any) -> bool:
        """Whether to leave `packet` undecoded: while behind, every one before the next keyframe,
        once a keyframe has come (a stream with none, such as one refreshed by intra slices, is
        never skipped). Packets with no slice (parameter sets, SEI) are decoded, and so is every
        packet of an intra-only codec (each is a keyframe: there is no GOP to win back at once)."""
        if not packet.size or self.kinds.intra_only:
            return False
        kind = self._kind(packet)
        if kind == "idr":
            self._keyframe_at(self._time(packet))
            self.behind = False
            return False
        if not self.behind or kind is None or not self.keyframes:
            return False
        self.stats.behind_live += 1
        self.skipped += 1
        return True

    def overdue(self, packet: Any) -> bool:
        """Whether the keyframe a skip waits for is later than two GOPs after the last one
        (OVERDUE_S while the GOP is unknown): the source then no longer counts the stream as
        flowing, so its read timeout ends a stream that stopped sending keyframes (a reconnect
        starts at one) instead of skipping it for ever."""
        at = self._time(packet)
        if at is None:
            return False
        since = self.last_keyframe if self.last_keyframe is not None else self.fell_behind_at[0]
        return at - since > (OVERDUE_S if self.gop is None else 2 * self.gop) + self.limit_s

    def _keyframe_at(self, at: float | None) -> None:
        self.keyframes += 1
        if at is None:
            return
        if self.last_keyframe is not None:
            self.gop = at - self.last_keyframe
        self.last_keyframe = at

    def _time(self, packet: Any) -> float | None:
        """The packet's time on the timeline (None without a timestamp or before the first frame)."""
        if packet.pts is None or packet.time_base is None:
            return None
        return self.timeline.peek(float(packet.pts * packet.time_base))

    def _kind(self, packet: Any) -> str | None:
        if self.kinds.codec in ("h264", "hevc"):
            return self.kinds(packet)
        return "idr" if packet.is_keyframe else "ref"
