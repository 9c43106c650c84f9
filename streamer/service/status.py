"""What `GET /status` answers and `streamer run`'s progress display shows: one body, read from counters.

    status = StatusReport(stream)          # adds its latency observer to the stream
    body = status.body()                   # the JSON-able dict /status returns

Everything comes from counts the pipeline keeps anyway (the summary, the queues, the sinks' stats):
building a body costs a pass over the sources and sinks, nothing between calls. Latency is the one
figure measured as work happens: `RecentLatency` keeps the capture -> result time of each source's
latest results (at most `LATENCY_SAMPLES`, none older than `LATENCY_WINDOW_S`) for p50 and p99.
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING, Any

from ..frames import Event, Result
from ..pipeline.observer import IgnoringObserver
from ..redact import redact, redact_url
from ..sources import SourceState
from .metrics import FrameRates

if TYPE_CHECKING:
    from ..config.schema import SourceConfig
    from ..pipeline.runner import Stream

LOCATION_KEYS = ("url", "path", "graph", "device")
LATENCY_SAMPLES = 512
LATENCY_WINDOW_S = 30.0
RESULTS_SINK = "topics"  # the stream's own sink: every result reaches it as soon as the stages are done


class RecentLatency(IgnoringObserver):
    """Capture -> result seconds of each source's recent results (as they reach the stream's topic sink)."""

    def __init__(self, samples: int = LATENCY_SAMPLES, window_s: float = LATENCY_WINDOW_S) -> None:
        self.window_s = window_s
        self._samples = samples
        self._recent: dict[str, deque[tuple[float, float]]] = {}

    def sink_wrote(self, sink: str, item: Result | Event) -> None:
        if sink != RESULTS_SINK or not isinstance(item, Result):
            return
        now = time.time()
        recent = self._recent.get(item.source_id)
        if recent is None:
            recent = self._recent[item.source_id] = deque(maxlen=self._samples)
        recent.append((now, now - item.frame.wall_time))

    def quantiles_ms(self, source_id: str) -> dict[str, float] | None:
        """{"p50": ms, "p99": ms} over the window, or None when no result came in it."""
        since = time.time() - self.window_s
        values = sorted(latency for at, latency in tuple(self._recent.get(source_id, ())) if at >= since)
        if not values:
            return None
        return {name: round(1000 * values[min(len(values) - 1, int(q * len(values)))], 1)
                for name, q in (("p50", 0.5), ("p99", 0.99))}


class StatusReport:
    """The status body of one stream. `rates` gives each source's fps (a fresh FrameRates by default)."""

    def __init__(self, stream: Stream, rates: FrameRates | None = None) -> None:
        self.stream = stream
        self.latency = RecentLatency()
        self._configs = {source.id: source for source in stream.config.sources}  # type & location, kept after removal
        stream.observers.add(self.latency)
        if rates is None:
            rates = FrameRates()
            stream.on_source_event(rates.source_event)
        self.rates = rates  # frames processed per second
        self.read_rates = FrameRates()  # frames read per second (before any queue drops them)
        stream.on_source_event(self.read_rates.source_event)

    def remember(self, source_id: str) -> None:
        """Keep an added source's config, so its type and location still show once it is removed."""
        self._configs[source_id] = self.stream.sources.configs[source_id]

    def state(self, source_id: str) -> str:
        """The source's state; `connecting` until it reports one (as the summary has it)."""
        state = self.stream.source_state(source_id)
        return state.value if state is not None else SourceState.CONNECTING.value

    def body(self) -> dict[str, Any]:
        stream, summary, info = self.stream, self.stream.summary, self.stream.model.info
        return {
            "ready": stream.ready,
            "stopping": stream.stopping,
            "uptime_s": round(time.monotonic() - summary.started, 3) if summary.started else 0.0,
            "model": {**info.provenance(), "files": dict(info.files), "load_s": round(stream.model_load_seconds, 3)},
            "frames": summary.frames,
            "detections": summary.detections,
            "events": summary.events,
            "batches": summary.batches,
            "sources": [self.source(source_id) for source_id in list(summary.sources)],
            "sinks": [self.sink(sink) for sink in stream.sinks],
        }

    def source(self, source_id: str) -> dict[str, Any]:
        report = self.stream.summary.sources[source_id]
        reader = self.stream.sources.readers.get(source_id)
        running, started = self.stream.source_state(source_id) is SourceState.RUNNING, self.stream.summary.started
        dropped, stale = (reader.queue.dropped, reader.queue.stale) if reader is not None else (report.dropped, report.stale)
        return {
            **self.describe_source(source_id),
            "state": self.state(source_id),
            "active": reader is not None,  # False once removed
            "error": self._scrubbed(source_id, report.error),
            "last_error": self._scrubbed(source_id, report.last_error),
            "read": report.read,
            "frames": report.frames,
            "dropped": dropped,
            "stale": stale,
            "paused_frames": report.paused,
            "over_max_fps": report.over_max_fps,
            "skipped_before_decode": report.skipped_before_decode,
            "behind_live": report.behind_live,
            "reconnects": report.reconnects,
            "attempts": report.attempts,
            "decode_errors": report.decode_errors,
            "discontinuities": report.discontinuities,
            "damage": self._scrubbed(source_id, report.damage),
            "tolerate_damage": report.tolerate_damage,
            "queue_depth": len(reader.queue) if reader is not None else 0,
            "fps": round(self.rates.rate(source_id, report.frames, running, started), 2),
            "fps_in": round(self.read_rates.rate(source_id, report.read, running, started), 2),
            "latency_ms": self.latency.quantiles_ms(source_id),
        }

    def _scrubbed(self, source_id: str, text: str | None) -> str | None:
        """`text` redacted, the source URL's secrets too (the sources redact it already: a second guard)."""
        url = getattr(self.config_of(source_id), "url", None)
        return redact(text, url) if text else text

    def sink(self, sink: Any) -> dict[str, Any]:
        name = sink.describe()
        report, queue = self.stream.summary.sinks.get(name), self.stream.sink_queues.get(name)
        stats = sink.stats()
        return {
            "name": name,
            "written": report.written if report is not None else 0,
            "dropped": report.dropped if report is not None else 0,
            "failed": report.failed if report is not None else 0,
            "last_error": redact(report.last_error) if report is not None and report.last_error else None,
            "queue_depth": len(queue) if queue is not None else 0,
            **({"counters": stats} if stats else {}),
        }

    def config_of(self, source_id: str) -> SourceConfig | None:
        """The source's config, also once it was removed (None for one the stream never had)."""
        return self.stream.sources.configs.get(source_id) or self._configs.get(source_id)

    def describe_source(self, source_id: str) -> dict[str, Any]:
        """Id, type and where it reads (URLs without passwords or query strings)."""
        return described_source(source_id, self.config_of(source_id))


def described_source(source_id: str, config: SourceConfig | None) -> dict[str, Any]:
    """Id, type and where a source reads (URLs without passwords or query strings)."""
    if config is None:
        return {"id": source_id, "type": None}
    described: dict[str, Any] = {"id": source_id, "type": type(config).__struct_config__.tag}
    for key in LOCATION_KEYS:
        value = getattr(config, key, None)
        if value is not None:
            described[key] = redact_url(value) if key == "url" else value
    return described
