"""PipelineMetrics without the server: what a run leaves in its registry, the fps window, sink counters."""

from __future__ import annotations

import prometheus_client
import pytest

import streamer
from streamer.service.metrics import SINK_COUNTERS, FrameRates, PipelineMetrics
from streamer.sinks.callback import CallbackSink
from streamer.sinks.jsonl import JsonlSink
from streamer.sinks.mqtt import MqttSink
from streamer.sinks.snapshot import SnapshotSink
from streamer.sinks.webhook import WebhookSink
from tests.service.helpers import lavfi, parse, value


async def test_a_finished_run_leaves_its_counts_in_the_metrics(centerface, tmp_path):
    metrics = PipelineMetrics()
    failing = CallbackSink(_fail_on_odd_frames)
    config = {
        "sources": [lavfi("cam1", max_frames=6, policy="block", realtime=False)],  # loses no frame
        "stages": [{"type": "filter"}],
        "sinks": [{"type": "jsonl", "path": str(tmp_path / "out.jsonl")}],
        "batching": {"max_batch_size": 2, "max_wait_ms": 5},
    }
    async with streamer.open(config, model=centerface, results=False, sinks=[failing], observers=[metrics]) as stream:
        metrics.attach(stream)  # already an observer: not added twice
        summary = await stream.wait()

    samples = parse(metrics.exposition()[0].decode())
    assert value(samples, "streamer_source_frames_processed_total", source="cam1") == 6
    assert value(samples, "streamer_frames_total") == 6
    assert value(samples, "streamer_batch_size_frames_count") == summary.batches == value(samples, "streamer_batches_total")
    assert value(samples, "streamer_batch_size_frames_sum") == 6
    assert value(samples, "streamer_stage_latency_seconds_count", stage="0:FilterStage") == 6
    assert value(samples, "streamer_source_state", source="cam1", state="ended") == 1
    assert value(samples, "streamer_source_frames_per_second", source="cam1") == 0
    assert value(samples, "streamer_sink_written_total", sink=f"jsonl {tmp_path / 'out.jsonl'}") == 6
    assert value(samples, "streamer_sink_failed_total", sink=failing.describe()) == 3
    assert value(samples, "streamer_sink_written_total", sink=failing.describe()) == 3
    assert value(samples, "streamer_sink_last_write_timestamp_seconds", sink=failing.describe()) > 0
    assert value(samples, "streamer_ready") == 0


async def test_frames_skipped_for_max_fps_are_dropped_under_their_own_reason(centerface, clip):
    metrics = PipelineMetrics()
    config = {"sources": [{"type": "file", "id": "cam", "path": str(clip), "max_fps": 10}]}
    async with streamer.open(config, model=centerface, results=False, observers=[metrics]) as stream:
        metrics.attach(stream)
        await stream.wait()

    samples = parse(metrics.exposition()[0].decode())
    assert value(samples, "streamer_source_frames_dropped_total", source="cam", reason="max_fps") == 20
    assert value(samples, "streamer_source_frames_processed_total", source="cam") == 10
    assert value(samples, "streamer_source_connect_attempts_total", source="cam") == 1


def test_each_instance_has_its_own_registry_and_none_touches_the_global_one():
    first, second = PipelineMetrics(), PipelineMetrics()
    first.batch_done(4, 0.1)

    assert first.registry is not second.registry
    assert value(parse(first.exposition()[0].decode()), "streamer_batch_size_frames_count") == 1
    assert value(parse(second.exposition()[0].decode()), "streamer_batch_size_frames_count") == 0
    assert not [family.name for family in prometheus_client.REGISTRY.collect() if family.name.startswith("streamer_")]


def test_openmetrics_is_served_to_a_scraper_that_asks_for_it():
    body, content_type = PipelineMetrics().exposition("application/openmetrics-text; version=1.0.0")

    assert content_type.startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")


def test_fps_is_the_rate_over_the_window_between_scrapes():
    clock = _Clock()
    rates = FrameRates(window_s=30, clock=clock)

    clock.now = 110.0
    assert rates.rate("cam", 100, running=True, started=100.0) == pytest.approx(10.0)  # first scrape: average since start
    clock.now = 125.0
    assert rates.rate("cam", 400, running=True, started=100.0) == pytest.approx(20.0)  # since the first scrape
    clock.now = 140.0
    assert rates.rate("cam", 400, running=True, started=100.0) == pytest.approx(10.0)  # back to the 110 s sample
    clock.now = 155.0
    assert rates.rate("cam", 700, running=True, started=100.0) == pytest.approx(10.0)  # from the 125 s sample
    assert rates.rate("cam", 700, running=False, started=100.0) == 0.0


def test_fps_before_a_second_scrape_counts_from_when_the_source_started_running():
    from streamer.sources import SourceEvent, SourceState

    clock = _Clock()
    rates = FrameRates(clock=clock)
    clock.now = 150.0
    rates.source_event(SourceEvent("cam", SourceState.CONNECTING, SourceState.RUNNING, None, 0))
    clock.now = 160.0

    assert rates.rate("cam", 50, running=True, started=100.0) == pytest.approx(5.0)


def test_every_counter_a_sink_reports_has_a_metric(tmp_path):
    sinks = [
        WebhookSink(url="http://127.0.0.1:9/hook", spool_dir=tmp_path / "spool"),
        MqttSink(host="127.0.0.1"),
        JsonlSink(path=str(tmp_path / "a.jsonl")),
        SnapshotSink(folder=str(tmp_path / "snaps")),
    ]

    for sink in sinks:
        assert set(sink.stats()) <= set(SINK_COUNTERS) | {"dropped"}, sink.describe()
    assert set(sinks[0].stats()) >= {"delivered", "retried", "spooled", "dead_lettered", "dropped"}
    assert set(sinks[1].stats()) >= {"published", "reconnects", "dropped"}


class _Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def _fail_on_odd_frames(result) -> None:
    if result.frame_index % 2:
        raise ValueError("odd frame")
