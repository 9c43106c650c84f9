"""Prometheus metrics for one running stream, on a registry of its own.

`PipelineMetrics(stream)` does two things. It is a pipeline Observer, so it times what only shows
as it happens (the histograms below). And it registers a collector that reads the stream's own
counts at each scrape, so nothing is counted twice and a scrape costs nothing between scrapes.
Each instance has its own `CollectorRegistry` (never prometheus_client's global one), so several
streams in one process do not clash. prometheus_client is imported when one is made, never by
`import streamer`.

Seen as work happens (histograms; `stage` is the stage's name, e.g. `FilterStage`):

    streamer_stage_latency_seconds{stage}            one call of a stage
    streamer_batch_size_frames                       frames per batch the model ran
    streamer_batch_inference_seconds                 the model's time per batch
    streamer_sink_last_write_timestamp_seconds{sink} Unix time a sink last finished a write

Read from the stream at each scrape:

    streamer_source_frames_read_total{source}                 frames the source handed over
    streamer_source_frames_processed_total{source}            frames that went through the model
    streamer_source_frames_dropped_total{source,reason}       reason: queue_full (a newer frame
                                                              replaced it), stale (older than
                                                              staleness_ms), paused (a live source's
                                                              frames while paused), max_fps (skipped
                                                              by the source to keep max_fps)
    streamer_source_reconnects_total{source}                  outages: times the source lost its
                                                              stream (or never had it) and began
                                                              reconnecting
    streamer_source_connect_attempts_total{source}            opens tried: the first, each retry,
                                                              each loop of a file
    streamer_source_decode_errors_total{source}               packets that failed to decode, frames
                                                              the decoder marked corrupt
    streamer_source_discontinuities_total{source}             timestamp jumps back (pts go on monotonic)
    streamer_source_hardware_fallbacks_total{source}          connections that asked for hwaccel but
                                                              decode on the CPU (no device, no decoder
                                                              for the codec, or FFmpeg gave up on it)
    streamer_source_damaged{source}                           1 when a file ended with decode errors or
                                                              short of the frames it declares
    streamer_source_state{source,state}                       1 for the current state, 0 otherwise
                                                              (connecting, running, reconnecting,
                                                              paused, ended, failed)
    streamer_source_queue_depth_frames{source}                frames waiting for the batcher
    streamer_source_frames_per_second{source}                 processed, over the last ~30 s (see
                                                              FrameRates); 0 unless running
    streamer_stages_queue_depth_batches                       batches inferred, waiting for the stages
                                                              (stages run one frame at a time, in order)
    streamer_batch_cost_seconds{backend,input,size}           what a batch of `size` is learnt to cost
                                                              (docs/batching.md)
    streamer_batch_cost_observations_total{backend,input,size} batches that cost was learnt from
    streamer_live_batch_size_frames                           batch size last chosen for live sources
    streamer_live_batch_wait_seconds                          and how long it may wait to fill
    streamer_sink_written_total{sink}                         results and events the sink wrote
    streamer_sink_failed_total{sink}                          items the sink took and could not write
                                                              (a callback that raised); the last
                                                              error is in /status
    streamer_sink_dropped_total{sink,reason}                  reason: queue_full (its queue, with
                                                              overflow = "drop_oldest"), sink (inside
                                                              the sink: webhook spool or MQTT
                                                              in-flight buffer full)
    streamer_sink_queue_depth_items{sink}                     items waiting for the sink
    streamer_sink_delivered_total{sink}                       webhook: acknowledged by the endpoint
    streamer_sink_retried_total{sink}                         webhook: failed attempts, retried
    streamer_sink_spooled_total{sink}                         webhook: waited in the spool on failure
    streamer_sink_dead_lettered_total{sink}                   webhook: refused, in the dead-letter file
    streamer_sink_published_total{sink}                       MQTT: acknowledged by the broker
    streamer_sink_reconnects_total{sink}                      MQTT
    streamer_sink_pending_items{sink}                         webhook, MQTT: not yet acknowledged
    streamer_sink_rotations_total{sink}                       JSONL: files rotated
    streamer_sink_skipped_total{sink}                         JSONL: results a resumed run had written
    streamer_sink_snapshots_total{sink}                       snapshot: JPEGs saved
    streamer_model_info{model_id,architecture,task,package,backend}   always 1
    streamer_model_load_seconds                               time to load the model at start
    streamer_frames_total, streamer_detections_total, streamer_events_total, streamer_batches_total
    streamer_start_time_seconds                               Unix time the pipeline started
    streamer_ready                                            1 when at least one source is running

Sink labels are the sink's `describe()` text (`jsonl out/a.jsonl`, `webhook https://host/x`, with
credentials masked). Sources and sinks that have ended or were removed keep their last counts.
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Iterator

from ..frames import Event, Result
from ..sources import SourceEvent, SourceState

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from ..pipeline.runner import Stream
    from ..sources import FrameQueue

STAGE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
INFERENCE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128)

# What a sink's `stats()` may report: key -> (metric name without streamer_sink_, type, help).
SINK_COUNTERS: dict[str, tuple[str, str, str]] = {
    "delivered": ("delivered", "counter", "Results the endpoint acknowledged (webhook)."),
    "retried": ("retried", "counter", "Failed delivery attempts that were retried (webhook)."),
    "spooled": ("spooled", "counter", "Results that waited in the spool while the endpoint failed (webhook)."),
    "dead_lettered": ("dead_lettered", "counter", "Results the endpoint refused, kept in the dead-letter file (webhook)."),
    "published": ("published", "counter", "Results the broker acknowledged (MQTT)."),
    "reconnects": ("reconnects", "counter", "Reconnections to the broker (MQTT)."),
    "pending": ("pending_items", "gauge", "Results written and not yet acknowledged (webhook, MQTT)."),
    "rotations": ("rotations", "counter", "Output files rotated (JSONL)."),
    "skipped": ("skipped", "counter", "Results a resumed run had already written (JSONL)."),
    "snapshots": ("snapshots", "counter", "Snapshots saved (snapshot)."),
}  # "dropped" goes to streamer_sink_dropped_total{reason="sink"}

DROP_REASONS = ("queue_full", "stale", "paused", "max_fps", "behind_live")


class PipelineMetrics:
    """An Observer of the pipeline plus a collector reading `stream` at scrape time.

    Make it with the stream (`PipelineMetrics(stream)`: it adds itself to the stream's observers),
    or before it (`observers=[metrics]` in `streamer.open`, then `metrics.attach(stream)`).
    `registry` is where it registers (a fresh one by default); `exposition()` renders it.
    """

    def __init__(self, stream: Stream | None = None, *, registry: CollectorRegistry | None = None) -> None:
        from prometheus_client import CollectorRegistry, Gauge, Histogram

        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.stream: Stream | None = None
        self.rates = FrameRates()
        self._stage = Histogram("streamer_stage_latency_seconds", "Time one call of a stage took.",
                                ["stage"], buckets=STAGE_BUCKETS, registry=self.registry)
        self._batch_size = Histogram("streamer_batch_size_frames", "Frames per batch the model ran.",
                                     buckets=BATCH_BUCKETS, registry=self.registry)
        self._inference = Histogram("streamer_batch_inference_seconds", "Time the model took for one batch.",
                                    buckets=INFERENCE_BUCKETS, registry=self.registry)
        self._last_write = Gauge("streamer_sink_last_write_timestamp_seconds",
                                 "Unix time the sink last finished writing a result or event.", ["sink"], registry=self.registry)
        self._stages: dict[str, Any] = {}
        self._sinks: dict[str, Any] = {}
        self._collector = StreamCollector(self)
        self.registry.register(self._collector)
        if stream is not None:
            self.attach(stream)

    def attach(self, stream: Stream) -> None:
        """Read this stream at each scrape, and observe it (unless already one of its observers)."""
        if self.stream is stream:
            return
        if self.stream is not None:
            raise ValueError("these metrics already watch another stream: make one PipelineMetrics per stream")
        self.stream = stream
        if not any(member is self for member in stream.observers.members):
            stream.observers.add(self)
        stream.on_source_event(self.rates.source_event)

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """The registry in the format `accept` (an HTTP Accept header) asks for, and its content type."""
        from prometheus_client.exposition import choose_encoder

        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type

    # ---- the Observer ------------------------------------------------------------------------

    def batch_done(self, size: int, seconds: float) -> None:
        self._batch_size.observe(size)
        self._inference.observe(seconds)

    def stage_done(self, stage: str, seconds: float) -> None:
        child = self._stages.get(stage)
        if child is None:
            child = self._stages[stage] = self._stage.labels(stage)
        child.observe(seconds)

    def sink_wrote(self, sink: str, item: Result | Event) -> None:
        child = self._sinks.get(sink)
        if child is None:
            child = self._sinks[sink] = self._last_write.labels(sink)
        child.set(time.time())


class FrameRates:
    """Frames per second per source, for the `streamer_source_frames_per_second` gauge.

    Each scrape adds a sample (time, frames processed) per source; the rate is taken between now and
    the newest sample at least `window_s` old (or the oldest kept), so it covers the last ~30 s when
    Prometheus scrapes more often than that, and the time since the previous scrape when it scrapes
    less often. It follows changes, unlike the average since start, and needs nothing between
    scrapes, unlike a rate kept per frame. Until a sample `min_span_s` old exists (the first
    scrape), it falls back to the average since the source last started running. A source that is
    not running reports 0 at once rather than a rate decaying over the window. For alerting and
    graphs, prefer `rate(streamer_source_frames_processed_total[1m])` in PromQL: this gauge is for
    a human reading /metrics or /status. Samples closer than `min_gap_s` to the previous one are not
    kept, so a client polling fast cannot grow the window's memory.
    """

    def __init__(
        self,
        window_s: float = 30.0,
        min_span_s: float = 1.0,
        min_gap_s: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window_s = window_s
        self.min_span_s = min_span_s
        self.min_gap_s = min_gap_s
        self.clock = clock
        self._samples: dict[str, deque[tuple[float, int]]] = {}
        self._running_since: dict[str, float] = {}

    def source_event(self, event: SourceEvent) -> None:
        """A stream's source-event listener: note when each source starts running."""
        if event.state is SourceState.RUNNING:
            self._running_since[event.source_id] = self.clock()

    def rate(self, source_id: str, frames: int, running: bool, started: float) -> float:
        """Record a sample of `frames` processed now; the rate (0 unless `running`).

        `started` (monotonic) stands in for when the source started running if no event said so.
        """
        now = self.clock()
        samples = self._samples.setdefault(source_id, deque())
        if not samples or now - samples[-1][0] >= self.min_gap_s:
            samples.append((now, frames))
        while len(samples) > 2 and samples[1][0] <= now - self.window_s:
            samples.popleft()
        if not running:
            return 0.0
        then, frames_then = samples[0]
        if now - then >= self.min_span_s:
            return max(0.0, (frames - frames_then) / (now - then))
        since = self._running_since.get(source_id, started)
        return frames / (now - since) if now - since >= 1e-3 else 0.0


class StreamCollector:
    """The prometheus_client collector: every metric read from the stream at scrape time."""

    def __init__(self, metrics: PipelineMetrics) -> None:
        self.metrics = metrics
        self._queues: dict[str, FrameQueue] = {}  # each source's queue, kept after it is removed

    def describe(self) -> list[Any]:
        return []  # names vary with the sinks attached; nothing to check them against at register time

    def collect(self) -> Iterator[Any]:
        stream = self.metrics.stream
        if stream is None:
            return
        yield from self._pipeline(stream)
        yield from self._sources(stream)
        yield from self._sinks(stream)

    def _pipeline(self, stream: Stream) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily

        summary, info = stream.summary, stream.model.info
        yield InfoMetricFamily("streamer_model", "The model the pipeline runs.", value={
            "model_id": info.model_id, "architecture": info.architecture, "task": info.task,
            "package": info.package, "backend": info.backend,
        })
        yield GaugeMetricFamily("streamer_model_load_seconds", "Time the model took to load at start.",
                                value=stream.model_load_seconds)
        for name, value, help_text in (
            ("frames", summary.frames, "Frames that went through the model, all sources."),
            ("detections", summary.detections, "Detections in the results delivered."),
            ("events", summary.events, "Events the stages raised."),
            ("batches", summary.batches, "Batches the model ran."),
        ):
            yield CounterMetricFamily(f"streamer_{name}", help_text, value=value)
        if summary.started:
            started = time.time() - (time.monotonic() - summary.started)
            yield GaugeMetricFamily("streamer_start_time_seconds", "Unix time the pipeline started.", value=started)
        yield from self._batching(stream)
        yield GaugeMetricFamily("streamer_ready", "1 when at least one source is running.", value=float(stream.ready))
        yield GaugeMetricFamily("streamer_stages_queue_depth_batches",
                                "Batches the model finished that wait for the stages (which run in order).",
                                value=stream.stage_backlog)

    def _batching(self, stream: Stream) -> Iterator[Any]:
        """The batcher's cost model (per backend, input size and batch size) and its latest live choice."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        costs, labels = stream.batcher.costs, ["backend", "input", "size"]
        average = GaugeMetricFamily("streamer_batch_cost_seconds", "What a batch of this size is learnt to "
                                    "cost (moving average of the model's time).", labels=labels)
        seen = CounterMetricFamily("streamer_batch_cost_observations", "Batches of this size the cost was learnt from.",
                                   labels=labels)
        for key, sizes in costs.snapshot().items():
            for size, (seconds, count) in sizes.items():
                average.add_metric([key.backend, key.input, str(size)], seconds)
                seen.add_metric([key.backend, key.input, str(size)], count)
        choice = costs.last
        yield average
        yield seen
        yield GaugeMetricFamily("streamer_live_batch_size_frames", "The batch size last chosen for live sources "
                                "within their latency budget (0: none yet).", value=choice.size if choice else 0)
        yield GaugeMetricFamily("streamer_live_batch_wait_seconds", "How long that batch may wait to fill.",
                                value=choice.wait_s if choice else 0.0)

    def _sources(self, stream: Stream) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        source = ["source"]
        read = CounterMetricFamily("streamer_source_frames_read", "Frames the source handed to the pipeline.", labels=source)
        processed = CounterMetricFamily("streamer_source_frames_processed", "Frames of the source that went through the model.", labels=source)
        dropped = CounterMetricFamily("streamer_source_frames_dropped", "Frames dropped before the model, by reason.", labels=["source", "reason"])
        reconnects = CounterMetricFamily("streamer_source_reconnects", "Outages: times the source lost its stream "
                                         "(or never had it) and began reconnecting.", labels=source)
        attempts = CounterMetricFamily("streamer_source_connect_attempts", "Times the source opened or tried to open its input.", labels=source)
        decode_errors = CounterMetricFamily("streamer_source_decode_errors", "Packets that failed to decode and frames marked corrupt.", labels=source)
        undecoded = CounterMetricFamily("streamer_source_frames_skipped_before_decode", "Frames max_fps dropped "
                                        "without decoding them (counted in the max_fps drops too).", labels=source)
        jumps = CounterMetricFamily("streamer_source_discontinuities", "Times the source's timestamps jumped back.", labels=source)
        fallbacks = CounterMetricFamily("streamer_source_hardware_fallbacks", "Connections that asked for hardware decoding and decode on the CPU.", labels=source)
        damaged = GaugeMetricFamily("streamer_source_damaged", "1 when a file ended with decode errors or frames missing.", labels=source)
        state = GaugeMetricFamily("streamer_source_state", "1 for the source's current state, 0 for the others.", labels=["source", "state"])
        depth = GaugeMetricFamily("streamer_source_queue_depth_frames", "Frames waiting for the batcher.", labels=source)
        fps = GaugeMetricFamily("streamer_source_frames_per_second", "Frames processed per second, recently (0 unless running).", labels=source)
        for source_id, reader in stream.sources.readers.items():
            self._queues[source_id] = reader.queue
        for source_id, report in list(stream.summary.sources.items()):
            queue = self._queues.get(source_id)
            full, stale = (queue.dropped, queue.stale) if queue is not None else (report.dropped, report.stale)
            current = stream.source_state(source_id) or SourceState(report.state)  # connecting until it says
            read.add_metric([source_id], report.read)
            processed.add_metric([source_id], report.frames)
            for reason, count in zip(DROP_REASONS, (full, stale, report.paused, report.over_max_fps, report.behind_live)):
                dropped.add_metric([source_id, reason], count)
            reconnects.add_metric([source_id], report.reconnects)
            attempts.add_metric([source_id], report.attempts)
            decode_errors.add_metric([source_id], report.decode_errors)
            undecoded.add_metric([source_id], report.skipped_before_decode)
            jumps.add_metric([source_id], report.discontinuities)
            damaged.add_metric([source_id], float(report.damage is not None))
            for each in SourceState:
                state.add_metric([source_id, each.value], float(each is current))
            reader = stream.sources.readers.get(source_id)
            depth.add_metric([source_id], len(reader.queue) if reader is not None else 0)
            fallbacks.add_metric([source_id], reader.source.stats.hardware_fallbacks if reader is not None else 0)
            running = current is SourceState.RUNNING
            fps.add_metric([source_id], self.metrics.rates.rate(source_id, report.frames, running, stream.summary.started))
        yield from (read, processed, dropped, reconnects, attempts, decode_errors, undecoded, jumps, fallbacks, damaged, state, depth, fps)

    def _sinks(self, stream: Stream) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        written = CounterMetricFamily("streamer_sink_written", "Results and events the sink wrote.", labels=["sink"])
        failed = CounterMetricFamily("streamer_sink_failed", "Items the sink took and could not write.", labels=["sink"])
        dropped = CounterMetricFamily("streamer_sink_dropped", "Items dropped on the way to or inside the sink, by reason.", labels=["sink", "reason"])
        depth = GaugeMetricFamily("streamer_sink_queue_depth_items", "Items waiting in the sink's queue.", labels=["sink"])
        own: dict[str, Any] = {}
        seen: set[str] = set()
        for sink in stream.sinks:
            name = sink.describe()
            if name in seen:
                continue  # two sinks describing themselves alike share the pipeline's counts
            seen.add(name)
            report, queue = stream.summary.sinks.get(name), stream.sink_queues.get(name)
            written.add_metric([name], report.written if report is not None else 0)
            failed.add_metric([name], report.failed if report is not None else 0)
            dropped.add_metric([name, "queue_full"], report.dropped if report is not None else 0)
            depth.add_metric([name], len(queue) if queue is not None else 0)
            for key, value in sink.stats().items():
                if key == "dropped":
                    dropped.add_metric([name, "sink"], value)
                elif key in SINK_COUNTERS:
                    self._family(own, key).add_metric([name], value)
        yield from (written, failed, dropped, depth, *own.values())

    @staticmethod
    def _family(families: dict[str, Any], key: str) -> Any:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        if key not in families:
            name, kind, help_text = SINK_COUNTERS[key]
            family = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            families[key] = family(f"streamer_sink_{name}", help_text, labels=["sink"])
        return families[key]
