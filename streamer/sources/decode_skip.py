"""Packets a source need not decode: every frame they would give, and every frame that depends on
them, is one max_fps drops anyway.

A 30 fps camera read at `max_fps = 5` throws away five frames in six after decoding them; the ones
that no kept frame needs are not decoded at all, and counted in `stats.skipped_before_decode` (the
frames max_fps drops after decoding stay in `over_max_fps`). Which packets qualify, read from the
bitstream itself (never from a guess that could break a reference chain):

- intra-only codecs (MJPEG and the like): any frame max_fps will drop;
- H.264 non-reference frames (every slice with nal_ref_idc 0: the B-frames nothing refers to), when
  max_fps will drop them;
- H.264 and HEVC, in streams without reordering (no B-frames, as IP cameras send): the tail of a GOP,
  from the first frame after which max_fps keeps nothing until the next IDR frame. The next IDR is
  predicted from the last ones (only once two GOPs in a row had the same length); once a reference
  frame is skipped, every packet up to the next IDR is skipped too, so no frame is ever decoded
  against a missing reference. A GOP that runs longer than predicted costs the frames up to its
  IDR (counted with the others), and skipping stops until the GOP length is steady again. Where
  the GOP is a whole number of max_fps intervals, the kept frames are moved onto the IDRs once (one
  gap between kept frames is then up to an interval longer), so every GOP has its tail to skip.

Whether max_fps keeps a frame is the Timeline's own rule (`Timeline.due`), asked before decoding
with the packet's timestamp; the decisions are conservative: a frame the timeline might keep is
always decoded. Anything unknown (no timestamps, a timestamp that jumps back, a bitstream it cannot
parse, another codec) is decoded.
"""

from __future__ import annotations

from typing import Any

from .timeline import Timeline

H264_IDR, H264_SLICE = 5, 1
HEVC_IDR = (19, 20)  # IDR_W_RADL, IDR_N_LP (a CRA may be followed by frames that refer to before it)
HEVC_VCL_END = 32  # NAL types below are slices
STEADY_GOPS = 2  # GOPs in a row of the same length before the next IDR is predicted


class DecodeSkipper:
    """Says, packet by packet, whether decoding it can be skipped (`skip`), for one session."""

    def __init__(self, stream: Any, timeline: Timeline) -> None:
        context = stream.codec_context
        self.timeline = timeline
        self.kinds = PacketKinds(stream)
        self.reorders = bool(getattr(context, "has_b_frames", 0))
        self.time_base = stream.time_base
        self.step = timeline.step
        self.last_time: float | None = None
        self.last_skipped: float | None = None
        self.ahead: list[tuple[float, bool]] = []  # (timeline time, decoded) of packets not yet out of the decoder
        self.idr_times: list[float] = []
        self.broken = False  # a reference frame was skipped: skip on to the next IDR

    def skip(self, packet: Any) -> bool:
        if packet.pts is None or self.time_base is None:  # no time to decide by: only a broken chain skips
            kind = self.kinds(packet)
            self.broken = self.broken and kind != "idr"
            return self.broken and kind is not None
        time = float(packet.pts * self.time_base)
        self.reorders |= self.last_time is not None and time < self.last_time  # B-frames the header did not tell
        self.last_time = time
        at = self.timeline.peek(time)
        skipped = self._skippable(time, at, packet)
        if at is not None:
            self.ahead.append((at, not skipped))
        if skipped:
            self.last_skipped = max(time, self.last_skipped or time)
        return skipped

    def finish(self) -> None:
        """The session's packets are all read and its frames out: the timeline hears of the skipped
        ones at its end."""
        if self.last_skipped is not None:
            self.timeline.passed(self.last_skipped)

    def _skippable(self, time: float, at: float | None, packet: Any) -> bool:
        if self.kinds.intra_only:
            return self._dropped(at)
        kind = self.kinds(packet)
        if kind == "idr":
            self._idr_at(time)
        elif self.broken and kind is not None:  # parameter sets alone are never skipped
            return True
        if kind == "nonref":
            return self._dropped(at)
        if kind is None or self.reorders:
            return False
        self.broken = self._rest_of_gop_dropped(at, aligning=kind == "ref")
        return self.broken

    def _due(self, at: float) -> float | None:
        """From which timeline time max_fps keeps a frame, for the frame at `at`: the timeline's
        `due` carried on over the frames before `at` still inside the decoder (its threads hold a
        few, B-frames more), so the decision need not wait for them. With B-frames, only once every
        frame before `at` has reached the decoder (else the timeline's own, which errs to decoding)."""
        due, latest = self.timeline.due(), self.timeline.latest
        if latest is None:
            return due
        self.ahead = [(time, sent) for time, sent in self.ahead if time > latest + 1e-6]
        before = sorted(item for item in self.ahead if item[0] < at - 1e-6)
        times = [latest, *(time for time, _ in before), at]
        if self.reorders and any(later - earlier > 1.5 * self.step for earlier, later in zip(times, times[1:])):
            return due
        for time, sent in before:
            if sent and (due is None or time >= due):
                due = time + self.timeline.min_gap - 1e-6
        return due

    def _dropped(self, at: float | None) -> bool:
        """max_fps drops the frame at timeline time `at`."""
        due = None if at is None else self._due(at)
        return due is not None and at is not None and at < due

    def _rest_of_gop_dropped(self, at: float | None, aligning: bool) -> bool:
        """max_fps keeps no frame from `at` until the next IDR (predicted); or, `aligning`, it would
        keep the one at `at` and then drop the IDR, in a GOP a whole number of max_fps intervals long:
        the IDR is kept instead, once, and from then on the kept frames fall on the IDRs, so that each
        GOP's tail after its last kept frame goes undecoded (max_fps is kept: the one gap is longer)."""
        next_idr = self._next_idr()
        idr_at = self.timeline.peek(next_idr)
        due = None if at is None else self._due(at)
        if due is None or at is None or idr_at is None:
            return False
        if at < due:
            return idr_at - self.step / 2 < due
        return aligning and idr_at < at + self.timeline.min_gap - 1e-6 and self._whole_intervals(next_idr - self.idr_times[-1])

    def _whole_intervals(self, gop: float) -> bool:
        intervals = gop / self.timeline.min_gap
        return abs(intervals - round(intervals)) * self.timeline.min_gap <= self.step / 2

    def _idr_at(self, time: float) -> None:
        predicted = self._next_idr()
        if self.broken and time > predicted + self.step / 2:  # the GOP ran longer than it used to
            self.idr_times.clear()
        self.broken = False
        self.idr_times = [*self.idr_times[-STEADY_GOPS:], time]

    def _next_idr(self) -> float:
        """When the next IDR should come, or -inf while the GOP length is not steady."""
        times = self.idr_times
        if len(times) < STEADY_GOPS + 1:
            return float("-inf")
        gaps = [later - earlier for earlier, later in zip(times, times[1:])]
        if max(gaps) - min(gaps) > self.step / 2:
            return float("-inf")
        return times[-1] + gaps[-1]


class PacketKinds:
    """What a stream's packets hold, read from the bitstream: `kinds(packet)` is 'idr', 'nonref'
    (H.264 only), 'ref', or None when unknown (another codec, no slice, not NAL units)."""

    def __init__(self, stream: Any) -> None:
        context = stream.codec_context
        self.codec = context.codec.name
        self.intra_only = bool(context.codec.intra_only)
        self.length_size = _length_size(self.codec, bytes(context.extradata or b""))

    def __call__(self, packet: Any) -> str | None:
        return _nal_kind(self.codec, bytes(packet), self.length_size)


def _length_size(codec: str, extradata: bytes) -> int | None:
    """Bytes of each NAL's length prefix (avcC/hvcC), or None for Annex B start codes."""
    if codec == "h264" and len(extradata) > 4 and extradata[0] == 1:
        return (extradata[4] & 3) + 1
    if codec == "hevc" and len(extradata) > 21 and extradata[0] == 1:
        return (extradata[21] & 3) + 1
    return None


def _nal_kind(codec: str, data: bytes, length_size: int | None) -> str | None:
    """'idr', 'nonref' (H.264 only), 'ref' for the packet's slices, or None when unknown."""
    if codec not in ("h264", "hevc"):
        return None
    headers = _nal_headers(data, length_size)
    if not headers or any(header & 0x80 for header in headers):  # the forbidden bit: not NAL units
        return None
    if codec == "h264":
        slices = [header for header in headers if H264_SLICE <= header & 0x1F <= H264_IDR]
        if not slices:
            return None
        if any(header & 0x1F == H264_IDR for header in slices):
            return "idr"
        return "ref" if any(header & 0x60 for header in slices) else "nonref"
    kinds = [header >> 1 & 0x3F for header in headers if header >> 1 & 0x3F < HEVC_VCL_END]
    if not kinds:
        return None
    return "idr" if any(kind in HEVC_IDR for kind in kinds) else "ref"


def _nal_headers(data: bytes, length_size: int | None) -> list[int]:
    """The first byte of each NAL unit in a packet: length-prefixed when the lengths add up to the
    packet exactly, else Annex B start codes (an empty list when neither fits)."""
    if length_size is not None:
        headers, at = [], 0
        while at + length_size < len(data):
            size = int.from_bytes(data[at : at + length_size], "big")
            at += length_size
            if size == 0 or at + size > len(data):
                break
            headers.append(data[at])
            at += size
        if at == len(data) and headers:
            return headers
    headers, at = [], data.find(b"\x00\x00\x01")
    while at != -1 and at + 3 < len(data):
        headers.append(data[at + 3])
        at = data.find(b"\x00\x00\x01", at + 3)
    return headers
