"""Every count a source keeps, in one place: its thread writes them (AvSource and its Timeline), the
pipeline copies the reported ones into the run's summary (and from there to /status and /metrics)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SourceStats:
    """A source's own counts. Together with its queue's drops, every decoded frame not delivered is
    counted under a reason, and every outage and damaged file shows."""

    attempts: int = 0  # times it opened (or tried to open) its input: the first, each retry, each loop
    reconnects: int = 0  # outages: times it lost its stream (or never had it) and began reconnecting
    failures: int = 0  # failed attempts since it last ran (what its backoff and max_attempts count)
    sessions: int = 0  # inputs it opened: the first connection, each reconnect, each loop of a file
    frames: int = 0  # frames it gave out
    decode_errors: int = 0  # packets that failed to decode (their frames are lost), frames marked corrupt
    discontinuities: int = 0  # times its timestamps jumped back (each starts a new timeline segment)
    hardware_fallbacks: int = 0  # connections that asked for hwaccel and decode on the CPU (hwaccel.py)
    over_max_fps: int = 0  # frames skipped to keep at most max_fps a second
    skipped_before_decode: int = 0  # of those, the ones not even decoded (decode_skip.py)
    behind_live: int = 0  # frames a live source left undecoded to catch up with its stream (catch_up.py)
    damage: str | None = None  # why a file that ended is incomplete (decode errors, frames missing)
