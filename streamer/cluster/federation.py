"""One `/metrics` for the fleet: every worker's registry, labelled, and the coordinator's own.

Each worker renders its PipelineMetrics (service/metrics.py) as it does on one node; the
coordinator parses the texts, adds `worker` (the slot) and `node` (Ray's node id) to every
sample, and merges the families, so `sum by (worker) (rate(streamer_frames_total[1m]))` works.
Its own, read from the coordinator at each scrape:

    streamer_cluster_reassignments_total        sources placed again after their worker was lost
    streamer_cluster_reassign_seconds           worker lost -> source started on a survivor (histogram)
    streamer_cluster_workers_up                 workers answering pings
    streamer_cluster_worker_up{worker,node}     1 while that worker answers, 0 while it is lost
    streamer_cluster_worker_lost_total{worker}  times that worker was lost (died, hung, node gone)
    streamer_cluster_sources_waiting            sources that lost their worker and found no room yet
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator

from .coordinator import ENDED

if TYPE_CHECKING:
    from .coordinator import Coordinator

REASSIGN_BUCKETS = (0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 7.5, 10.0, 20.0, 60.0)


def federated_exposition(coordinator: Coordinator, texts: list[str], accept: str = "") -> tuple[bytes, str]:
    """The fleet's scrape in the format `accept` asks for, and its content type."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.exposition import choose_encoder

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fleet(coordinator, texts))
    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type


class _Fleet:
    """A one-scrape collector: the workers' families, relabelled and merged, then the coordinator's."""

    def __init__(self, coordinator: Coordinator, texts: list[str]) -> None:
        self.coordinator = coordinator
        self.texts = texts

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        yield from self._workers()
        yield from self._own()

    def _workers(self) -> Iterator[Any]:
        from prometheus_client.parser import text_string_to_metric_families
        from prometheus_client.samples import Sample

        merged: dict[str, Any] = {}
        for slot, text in zip(self.coordinator.slots, self.texts):
            labels = {"worker": str(slot.index), "node": slot.node or ""}
            for family in text_string_to_metric_families(text or ""):
                relabelled = [Sample(s.name, {**s.labels, **labels}, s.value, s.timestamp, s.exemplar) for s in family.samples]
                into = merged.setdefault(family.name, family)
                if into is family:
                    family.samples[:] = relabelled
                else:
                    into.samples.extend(relabelled)
        yield from merged.values()

    def _own(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        coordinator = self.coordinator
        yield CounterMetricFamily("streamer_cluster_reassignments", "Sources placed again after their worker was lost.",
                                  value=coordinator.reassignments)
        seconds = coordinator.reassign_seconds
        buckets = [(str(bound), sum(1 for value in seconds if value <= bound)) for bound in REASSIGN_BUCKETS]
        yield HistogramMetricFamily("streamer_cluster_reassign_seconds",
                                    "From a worker lost to its source started on a survivor.",
                                    buckets=[*buckets, ("+Inf", len(seconds))], sum_value=sum(seconds))
        yield GaugeMetricFamily("streamer_cluster_workers_up", "Workers answering pings.",
                                value=sum(slot.up for slot in coordinator.slots))
        up = GaugeMetricFamily("streamer_cluster_worker_up", "1 while the worker answers pings.", labels=["worker", "node"])
        lost = CounterMetricFamily("streamer_cluster_worker_lost", "Times the worker was lost (died, hung, node gone).",
                                   labels=["worker"])
        for slot in coordinator.slots:
            up.add_metric([str(slot.index), slot.node or ""], float(slot.up))
            lost.add_metric([str(slot.index)], slot.lost)
        yield up
        yield lost
        waiting = sum(1 for placement in coordinator.placements.values() if placement.slot is None and placement.state not in ENDED)
        yield GaugeMetricFamily("streamer_cluster_sources_waiting", "Sources that lost their worker and found no room yet.",
                                value=waiting)

