"""What a run did: counts per source, throughput, failures. Printed by `streamer run`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..batch_costs import BatchCosts
from ..frames import ModelInfo

if TYPE_CHECKING:
    from ..sources import SourceStats


@dataclass
class SourceReport:
    source_id: str
    read: int = 0  # frames the source handed to the pipeline
    frames: int = 0  # frames processed
    dropped: int = 0  # by its queue: a newer frame replaced it
    stale: int = 0  # by its queue: older than staleness_ms
    over_max_fps: int = 0  # skipped by the source to keep at most max_fps a second
    skipped_before_decode: int = 0  # of those, the ones the source did not even decode
    behind_live: int = 0  # left undecoded by a live source catching up with its stream
    reconnects: int = 0  # outages: times it lost its stream (or never had it) and began reconnecting
    attempts: int = 0  # times it opened or tried to open its input (the first, each retry, each loop)
    decode_errors: int = 0  # packets that failed to decode, frames the decoder marked corrupt
    discontinuities: int = 0  # times its timestamps jumped back (its pts go on monotonic)
    paused: int = 0  # a live source's frames discarded while it was paused
    state: str = "connecting"
    error: str | None = None  # why it failed
    last_error: str | None = None  # the latest reason it reconnected or failed (credentials masked)
    damage: str | None = None  # why a file that ended is incomplete (decode errors, frames missing)
    tolerate_damage: bool = False  # the file source's `tolerate_damage`: damage is then no failure

    def take_counts(self, stats: SourceStats) -> None:
        """Copy what the source counted itself."""
        self.over_max_fps, self.reconnects, self.attempts = stats.over_max_fps, stats.reconnects, stats.attempts
        self.skipped_before_decode, self.behind_live = stats.skipped_before_decode, stats.behind_live
        self.decode_errors, self.discontinuities, self.damage = stats.decode_errors, stats.discontinuities, stats.damage

    @property
    def counts_as_failed(self) -> bool:
        """It failed, or it is a file that ended damaged and may not."""
        return self.error is not None or (self.damage is not None and not self.tolerate_damage)

    def counts(self) -> str:
        undecoded = f" ({self.skipped_before_decode} skipped before decode)" if self.skipped_before_decode else ""
        over = f", {self.over_max_fps} over max_fps{undecoded}" if self.over_max_fps else ""
        over += f", {self.behind_live} skipped behind live" if self.behind_live else ""
        attempts = f" ({self.attempts} attempts)" if self.reconnects else ""
        return (
            f"{self.frames} frames ({self.read} read), {self.dropped} dropped, {self.stale} stale{over}, "
            f"{self.reconnects} reconnects{attempts}, {self.decode_errors} decode errors, "
            f"{self.discontinuities} discontinuities"
        )

    def status(self) -> str:
        if self.error:
            return f"FAILED: {self.error}"
        if self.damage:
            return f"{self.state}, {self.damage}" + (" (tolerated)" if self.tolerate_damage else "")
        return self.state


@dataclass
class SinkReport:
    name: str
    written: int = 0
    dropped: int = 0
    failed: int = 0  # items the sink took and could not write (a callback that raised)
    last_error: str | None = None

    def counts(self) -> str:
        failed = f", {self.failed} failed, last error: {self.last_error}" if self.failed else ""
        return f"{self.written} written, {self.dropped} dropped{failed}"


@dataclass
class Summary:
    model: ModelInfo
    outputs: list[str]
    sources: dict[str, SourceReport] = field(default_factory=dict)
    sinks: dict[str, SinkReport] = field(default_factory=dict)
    frames: int = 0
    detections: int = 0
    events: int = 0
    batches: int = 0
    started: float = 0.0
    finished: float | None = None
    costs: BatchCosts | None = None  # what the batcher learnt batches cost, and its latest live choice

    def count_frame(self, source_id: str) -> None:
        self.frames += 1
        self.sources.setdefault(source_id, SourceReport(source_id)).frames += 1

    @property
    def seconds(self) -> float:
        return max(1e-9, (self.finished or self.started) - self.started)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.finished else 0.0

    @property
    def failed(self) -> list[SourceReport]:
        """Sources that failed, and files that ended damaged without `tolerate_damage`."""
        return [report for report in self.sources.values() if report.counts_as_failed]

    @property
    def failed_sinks(self) -> list[SinkReport]:
        return [report for report in self.sinks.values() if report.failed]

    @property
    def succeeded(self) -> bool:
        """Nothing failed: no source and no sink (what `streamer run`'s exit code says)."""
        return not self.failed and not self.failed_sinks

    def batching_lines(self) -> list[str]:
        """The learnt cost per batch size (per backend and input size) and the latest live batch size."""
        if self.costs is None:
            return []
        lines = []
        for key, sizes in self.costs.snapshot().items():
            costs = ", ".join(f"{size}: {1000 * seconds:.1f} ms ({count}x)" for size, (seconds, count) in sizes.items())
            lines.append(f"batch cost ({key.backend} {key.input}): {costs}")
        if (choice := self.costs.last) is not None:
            lines.append(f"live batch size: {choice.size} (wait {1000 * choice.wait_s:.1f} ms)")
        return lines

    def render(self) -> str:
        lines = [
            f"frames: {self.frames} in {self.seconds:.2f} s ({self.fps:.1f} frames/s), "
            f"{self.batches} batches, {self.detections} detections"
            + (f", {self.events} events" if self.events else ""),
            f"model: {self.model.model_id} ({self.model.architecture}, {self.model.backend})",
        ]
        lines += self.batching_lines()
        for report in self.sources.values():
            lines.append(f"source {report.source_id}: {report.counts()}, {report.status()}")
        for output in self.outputs:
            sink = self.sinks.get(output)
            counts = f" ({sink.counts()})" if sink else ""
            lines.append(f"output: {output}{counts}")
        return "\n".join(lines)
