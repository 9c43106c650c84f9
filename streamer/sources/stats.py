"""What a source counts as it reads: its thread writes the counts, the pipeline copies them into the
run's summary (and from there to /status and /metrics)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SourceStats:
    """A source's own counts. Together with its queue's drops, every decoded frame not delivered is
    counted under a reason, and every outage and damaged file shows."""

    attempts: int = 0  # times it opened (or tried to open) its input: the first, each retry, each loop
    reconnects: int = 0  # outages: times it lost its stream (or never had it) and began reconnecting
    decode_errors: int = 0  # packets that failed to decode (their frames are lost), frames marked corrupt
    discontinuities: int = 0  # times its timestamps jumped back (each starts a new timeline segment)
    over_max_fps: int = 0  # frames skipped to keep at most max_fps a second
    damage: str | None = None  # why a file that ended is incomplete (decode errors, frames missing)
