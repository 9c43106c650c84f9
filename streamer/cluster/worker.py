"""A worker of the fleet: today's single-node pipeline in a Ray actor, one slot of `[cluster] workers`.

The actor is threaded (`max_concurrency` > 1): its methods run in Ray's threads and hand each
request to `WorkerHost`, which lives on an event loop of its own in a thread started through an
anyio blocking portal. That loop runs `streamer.open(..., keep_alive=True, results=False)` with the
worker's own model, and the sinks send results straight out (webhook, MQTT, files under the slot's
folder). Only small control messages cross processes; frames never do. No signal handlers: the
coordinator and Ray decide when a worker ends.

The coordinator's ping carries the leases, `{source: epoch}`, this worker holds. A source not in
them is stopped at once; a worker that has heard no ping for `hang_timeout_s` stops every source
(the coordinator has moved them by then); and a source whose owner file (slots.py) names a higher
epoch is stopped at the next checkpoint interval, before a file's checkpoint would be written.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import msgspec

from ..config import Config, load_config
from ..config.loader import source_config
from ..config.schema import ClusterConfig, MqttSinkConfig, SourceConfig, WebhookSinkConfig
from ..engine import AutoModel, DetectionModel
from ..errors import ConfigError
from ..pipeline import open as open_stream
from ..pipeline.runner import Stream, model_options
from ..service.checkpoint import Progress
from ..service.metrics import PipelineMetrics
from ..service.status import StatusReport
from ..sinks import build_sink
from . import slots

log = logging.getLogger("streamer.cluster")

MAX_CONCURRENCY = 8  # pings keep answering while an add or a status is in progress


class WorkerHost:
    """The worker's async side, on the worker's own event loop."""

    def __init__(self, config: Config, cluster: ClusterConfig, slot: int, node: str) -> None:
        self.slot, self.node, self.cluster = slot, node, cluster
        self.start_id = time.strftime("%Y%m%dT%H%M%S") + f"-{os.getpid()}"
        self.config = slots.slot_config(config, cluster.state_dir, slot, self.start_id, cluster.cpus_per_worker)
        self.state_dir = Path(cluster.state_dir)
        self.model: DetectionModel | None = None
        self.stream: Stream | None = None
        self.metrics: PipelineMetrics | None = None
        self.status: StatusReport | None = None
        self.epochs: dict[str, int] = {}
        self.fenced = 0  # sources this worker stopped because it lost them
        self.last_ping = time.monotonic()
        self.progress = Progress()
        self._opening = anyio.Lock()
        self._replayed = anyio.Event()
        self._closing = anyio.Event()
        self._watching = anyio.CancelScope()

    async def serve(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        """Load the model, replay what an earlier start of the slot left in its spools, and keep the
        pipeline (opened with the first source) until `close`."""
        self.model = await AutoModel.load(self.config.model.id, model_options(self.config))
        async with anyio.create_task_group() as group:
            self._group = group
            group.start_soon(self._replay_spools)
            group.start_soon(self._watch)
            task_status.started()
            await self._closing.wait()
            self._watching.cancel()

    def close(self) -> None:
        """Stop the sources; the pipeline drains to the sinks and `serve` returns."""
        self._closing.set()

    # ---- sources ---------------------------------------------------------------------------------

    async def add(self, table: dict[str, Any], epoch: int) -> dict[str, Any]:
        self.last_ping = time.monotonic()  # the coordinator speaks to us: the lease starts now
        running = set(self.stream.sources.readers) if self.stream is not None else set()
        source = source_config(table, taken=running)
        position = slots.load_position(self.state_dir, source)
        async with self._opening:
            if self.stream is None:
                await self._group.start(self._run, source, position)
            elif position is not None:
                self.stream.sources.add(source, position)  # Stream.add_source starts files from the top
            else:
                self.stream.add_source(source)
        assert self.stream is not None and self.status is not None
        self.status.remember(source.id)  # type: ignore[arg-type]
        self.epochs[source.id] = epoch  # type: ignore[index]
        if position is not None:
            log.info("worker %d: source %s resumes after frame %d", self.slot, source.id, position[0])
        return {"id": source.id, "state": self.status.state(source.id), "worker": self.slot, "node": self.node,  # type: ignore[arg-type]
                "resumed_after": position[0] if position else None}

    async def _run(self, first: SourceConfig, position: slots.Position | None, *, task_status: Any) -> None:
        """The pipeline, opened with the worker's first source and kept open until the worker closes."""
        await self._replayed.wait()  # the slot's spools are this start's sinks' now
        config = msgspec.structs.replace(self.config, sources=[first])
        resume = {first.id: position} if position is not None else {}  # file sinks append either way
        options = {"model": self.model, "keep_alive": True, "results": False, "resume": resume,
                   "shutdown_timeout_s": self.config.run.drain_timeout_s, "observers": [self.progress]}
        async with open_stream(config, **options) as stream:  # type: ignore[arg-type]
            self.stream, self.metrics = stream, PipelineMetrics(stream)
            self.status = StatusReport(stream, self.metrics.rates)
            task_status.started()
            await self._closing.wait()

    def remove(self, source_id: str, why: str = "by request") -> None:
        if self.stream is None or source_id not in self.stream.sources.readers:
            raise ConfigError(f"worker {self.slot} runs no source {source_id!r}", "$")
        self._save_checkpoints(source_id)  # fences it instead if the coordinator has moved it on already
        if source_id in self.stream.sources.readers:
            self.stream.remove_source(source_id)
        self.epochs.pop(source_id, None)
        log.info("worker %d: source %s stopped (%s)", self.slot, source_id, why)

    def pause(self, source_id: str, paused: bool) -> str:
        if self.stream is None or source_id not in self.stream.sources.readers:
            raise ConfigError(f"worker {self.slot} runs no source {source_id!r}", "$")
        (self.stream.pause_source if paused else self.stream.resume_source)(source_id)
        assert self.status is not None
        return self.status.state(source_id)

    # ---- leases and fencing -------------------------------------------------------------------

    def ping(self, leases: dict[str, int], issued: int) -> dict[str, Any]:
        """The coordinator's heartbeat: keep exactly the sources it leases to this worker, of those
        placed by then (epochs up to `issued`; one placed since may not be in `leases` yet)."""
        self.last_ping = time.monotonic()
        for source_id, epoch in list(self.epochs.items()):
            if epoch <= issued and leases.get(source_id) != epoch:
                self._fence(source_id, "the coordinator placed it elsewhere")
        return self.report()

    def report(self) -> dict[str, Any]:
        """The small status the coordinator keeps: sources with their state, frames and epoch."""
        sources = {}
        if self.stream is not None and self.status is not None:
            summary = self.stream.summary
            for source_id, epoch in self.epochs.items():
                report = summary.sources.get(source_id)
                sources[source_id] = {"state": self.status.state(source_id), "epoch": epoch,
                                      "frames": report.frames if report is not None else 0}
        info = self.model.info if self.model is not None else None
        return {"slot": self.slot, "node": self.node, "pid": os.getpid(), "start": self.start_id,
                "sources": sources, "fenced": self.fenced,
                "model": info.provenance() if info is not None else None,
                "frames": self.stream.summary.frames if self.stream is not None else 0}

    async def _watch(self) -> None:
        """Every ping interval: give up every source once the lease lapsed. Every checkpoint interval:
        read the owner files, and checkpoint file sources."""
        interval = self.cluster.ping_interval_s
        saved_at = time.monotonic()
        with self._watching:
            while True:
                await anyio.sleep(interval)
                if self.epochs and time.monotonic() - self.last_ping > self.cluster.hang_timeout_s:
                    for source_id in list(self.epochs):
                        self._fence(source_id, f"no ping from the coordinator for {self.cluster.hang_timeout_s} s")
                if time.monotonic() - saved_at >= self.config.run.checkpoint_interval_s:
                    saved_at = time.monotonic()
                    self._save_checkpoints()

    def _fence(self, source_id: str, why: str) -> None:
        if source_id in self.epochs:
            self.fenced += 1
            self.epochs.pop(source_id)
            if self.stream is not None and source_id in self.stream.sources.readers:
                self.stream.remove_source(source_id)
            log.warning("worker %d: source %s stopped: %s", self.slot, source_id, why)

    def _save_checkpoints(self, *only: str) -> None:
        """Each file source's frontier (what every sink wrote), after one flush of the sinks to disk.
        A source whose owner file names a newer epoch was moved while this worker was cut off: it is
        stopped, and a file's checkpoint, the new owner's now, is left alone."""
        stream = self.stream
        if stream is None:
            return
        frontiers = {}
        for source_id in only or list(self.epochs):
            source = stream.sources.configs.get(source_id)
            if source is None or source_id not in self.epochs:
                continue
            if slots.owner_epoch(self.state_dir, source_id) > self.epochs[source_id]:
                self._fence(source_id, "a newer owner holds it")
            elif slots.resumable(source) and (position := self.progress.frontier(stream, source_id)) is not None:
                frontiers[source_id] = (source, position)
        if frontiers:
            for sink in stream.sinks:
                sink.flush_to_disk()
            for source_id, (source, position) in frontiers.items():
                slots.save_position(self.state_dir, source, position, self.epochs[source_id])  # type: ignore[arg-type]

    async def _replay_spools(self) -> None:
        """Deliver what an earlier start of this slot left in its spools, before any source runs."""
        try:
            for index, sink in enumerate(self.config.sinks):
                spooled = isinstance(sink, (WebhookSinkConfig, MqttSinkConfig)) and sink.spool_dir is not None
                if spooled and any(Path(sink.spool_dir).glob("*")):  # type: ignore[union-attr, arg-type]
                    async with build_sink(sink, index):
                        pass  # opening sends the spool first; closing waits up to drain_s for it to empty
        finally:
            self._replayed.set()

    # ---- status and metrics --------------------------------------------------------------------

    def full_status(self) -> dict[str, Any]:
        body = self.status.body() if self.status is not None else {"sources": [], "sinks": []}
        return {**body, "worker": self.report()}

    def exposition(self) -> str:
        if self.metrics is None:
            return ""
        body, _ = self.metrics.exposition()
        return body.decode()


class Worker:
    """The Ray actor (wrapped by `actor_class`): each method hands one request to the host's loop."""

    def __init__(self, config: dict[str, Any], slot: int) -> None:
        import ray

        from anyio.from_thread import start_blocking_portal

        loaded = load_config(config)
        assert loaded.cluster is not None
        node = ray.get_runtime_context().get_node_id()
        self._portal_cm = start_blocking_portal(backend="asyncio")
        self._portal = self._portal_cm.__enter__()
        self.host = self._portal.call(WorkerHost, loaded, loaded.cluster, slot, node)  # its events belong to that loop
        self._served, _ = self._portal.start_task(self.host.serve)
        self._vigil = threading.Event()

    def ping(self, leases: dict[str, int], issued: int) -> dict[str, Any]:
        return self._portal.call(self.host.ping, leases, issued)

    def add_source(self, table: dict[str, Any], epoch: int) -> dict[str, Any]:
        return self._portal.call(self.host.add, table, epoch)

    def remove_source(self, source_id: str) -> None:
        self._portal.call(self.host.remove, source_id)

    def pause_source(self, source_id: str, paused: bool) -> str:
        return self._portal.call(self.host.pause, source_id, paused)

    def status(self) -> dict[str, Any]:
        return self._portal.call(self.host.full_status)

    def metrics(self) -> str:
        return self._portal.call(self.host.exposition)

    def vigil(self) -> None:
        """Answers only when the worker closes: the coordinator keeps one call in flight, so the
        worker's death fails it at once (a call made while Ray restarts an actor would wait)."""
        self._vigil.wait()

    def close(self) -> None:
        """Stop the sources and let the sinks drain (up to `[run] drain_timeout_s`)."""
        self._portal.call(self.host.close)
        self._served.result()
        self._vigil.set()
        self._portal_cm.__exit__(None, None, None)


def actor_class(ray: Any, cluster: ClusterConfig) -> Any:
    """`Worker` as a Ray actor class: restarted forever, threaded, holding the CPUs and GPUs asked for,
    spread over the nodes (a node lost takes as few workers with it as it can)."""
    return ray.remote(
        scheduling_strategy="SPREAD",
        num_cpus=cluster.cpus_per_worker,
        num_gpus=cluster.gpus_per_worker,
        max_restarts=-1,
        max_task_retries=0,
        max_concurrency=MAX_CONCURRENCY,
    )(Worker)
