"""Catching up with a camera the machine could not decode in time (RTSP and webcams, under `latest`).

A camera sends in real time whatever the reader does. When decoding falls behind (more cameras than
the cores can decode, a burst of load), the packets wait in the socket and the server's buffers and
every frame after them comes later: the lag grows without bound and no queue policy can help, since
the frames are late before they reach one. `CatchUp` measures how far the decoded frames run behind
the stream's own clock, and once that is over `BEHIND_LIVE_S` it has the source read on without
decoding up to the next keyframe (an IDR for H.264 and HEVC), where decoding starts afresh: no frame
is ever decoded against a missing reference. Reading a packet costs next to nothing beside decoding
it, so each skip wins back most of a GOP, and the source is live again within a few. The frames not
decoded are counted in `stats.behind_live`. Intra-only codecs (MJPEG) have no GOP to skip and are
left to their queue.

The lag is how much later a frame is decoded than the frame of the connection that came soonest,
by their timestamps (on the source's Timeline, which carries pts on over a jump back): wall time
minus pts, less the smallest such difference seen. A skip that wins nothing back (the keyframe
came no sooner than the frames before it) was no backlog but the stream's clock moving against the
wall clock (a camera that paused its clock with its sending): the measure then starts afresh there.
The same clock stamps each frame's capture time (`captured`), so the time a frame spent behind
live counts against its latency budget like the time it waits for a worker.
"""

from __future__ import annotations

from typing import Any

from .decode_skip import nal_length_size, nal_kind
from .stats import SourceStats
from .timeline import Timeline

BEHIND_LIVE_S = 1.0  # decoded frames this far behind the stream: read on to the next keyframe


class CatchUp:
    """For one connection: `decoded` hears of each decoded frame, `skip` says which packets to leave
    undecoded (those before the next keyframe, while behind)."""

    def __init__(self, stream: Any, timeline: Timeline, stats: SourceStats, limit_s: float = BEHIND_LIVE_S) -> None:
        context = stream.codec_context
        self.codec = context.codec.name
        self.intra_only = bool(context.codec.intra_only)
        self.length_size = nal_length_size(self.codec, bytes(context.extradata or b""))
        self.timeline = timeline
        self.stats = stats
        self.limit_s = limit_s
        self.offset: float | None = None  # the smallest wall time - pts seen
        self.behind = False
        self.fell_behind_at = (0.0, 0.0)  # (pts, wall time) of the frame it last fell behind at
        self.skipped = 0  # packets left undecoded since the last decoded frame
        self.discontinuities = stats.discontinuities

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
        """Whether to leave `packet` undecoded: while behind, every one before the next keyframe.
        Packets with no slice (parameter sets, SEI) are decoded, and so is every packet of an
        intra-only codec (each is a keyframe: there is no GOP to win back at once)."""
        if not self.behind or not packet.size or self.intra_only:
            return False
        kind = self._kind(packet)
        if kind == "idr":
            self.behind = False
            return False
        if kind is None:
            return False
        self.stats.behind_live += 1
        self.skipped += 1
        return True

    def _kind(self, packet: Any) -> str | None:
        if self.codec in ("h264", "hevc"):
            return nal_kind(self.codec, bytes(packet), self.length_size)
        return "idr" if packet.is_keyframe else "ref"
