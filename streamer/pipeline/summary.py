"""What a run did: counts per source, throughput, failures. Printed by `streamer run`."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..frames import ModelInfo


@dataclass
class SourceReport:
    source_id: str
    read: int = 0  # frames the source handed to the pipeline
    frames: int = 0  # frames processed
    dropped: int = 0
    stale: int = 0
    reconnects: int = 0
    paused: int = 0  # a live source's frames discarded while it was paused
    state: str = "connecting"
    error: str | None = None  # why it failed
    last_error: str | None = None  # the latest reason it reconnected or failed (credentials masked)


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
        return [report for report in self.sources.values() if report.error]

    @property
    def failed_sinks(self) -> list[SinkReport]:
        return [report for report in self.sinks.values() if report.failed]

    @property
    def succeeded(self) -> bool:
        """Nothing failed: no source and no sink (what `streamer run`'s exit code says)."""
        return not self.failed and not self.failed_sinks

    def render(self) -> str:
        lines = [
            f"frames: {self.frames} in {self.seconds:.2f} s ({self.fps:.1f} frames/s), "
            f"{self.batches} batches, {self.detections} detections"
            + (f", {self.events} events" if self.events else ""),
            f"model: {self.model.model_id} ({self.model.architecture}, {self.model.backend})",
        ]
        for report in self.sources.values():
            status = f"FAILED: {report.error}" if report.error else report.state
            lines.append(
                f"source {report.source_id}: {report.frames} frames ({report.read} read), {report.dropped} dropped, "
                f"{report.stale} stale, {report.reconnects} reconnects, {status}"
            )
        for output in self.outputs:
            sink = self.sinks.get(output)
            counts = f" ({sink.counts()})" if sink else ""
            lines.append(f"output: {output}{counts}")
        return "\n".join(lines)
