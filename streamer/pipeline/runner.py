"""The one module that wires every layer: sources -> batcher -> inference -> stages -> sinks.

Every arrow is a bounded queue and every box a task in one task group. Decoding and inference run
in worker threads. An inference worker takes a batch only when it is free, so frames wait in their
source's queue, where a live source's `latest` policy keeps them fresh. Batches carry a sequence
number, so several workers may overlap while results still leave in frame order.
"""

from __future__ import annotations

import logging
import os
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Sequence

import anyio
import msgspec
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ..batch_costs import CostKey
from ..batcher import Batcher
from ..config import Config, load_config
from ..engine import AutoModel, DetectionModel
from ..engine.auto_model import make_options
from ..engine.entities import LoadOptions
from ..engine.models.base import fitted_size
from ..engine.resolve import resolve
from ..frames import Event, Frame, Result
from ..groups import unwrapped_groups
from ..sinks import Sink, accepts, build_sink
from ..sinks.topics import Subscription, TopicSink
from ..config.loader import source_config
from ..config.schema import AnonymizeStageConfig, ClassifyStageConfig, ModelStageConfig, SourceConfig, TrackStageConfig
from ..errors import (
    ConfigError,
    MissingDependencyError,
    ModelFormatError,
    ModelNotFoundError,
    ParameterError,
    UnknownArchitectureError,
)
from ..sources import SourceEvent, SourceState
from .readers import SourceSet
from .observer import Observer, Observers
from .stages import Stage, build_stage
from .sink_queue import SinkQueue
from .summary import SinkReport, Summary

log = logging.getLogger("streamer")

Inferred = tuple[int, list[Frame], list[Any]]


def model_options(config: Config) -> LoadOptions:
    """The engine's load options from the config's [model] and [batching] tables."""
    fields = msgspec.to_builtins(config.model)
    for pipeline_only in ("id", "workers"):
        fields.pop(pipeline_only, None)
    return make_options(None, {**fields, "batch_size": config.batching.max_batch_size})


def load_model(config: Config) -> DetectionModel:
    """The model the config describes, loaded from code that is not async."""
    return AutoModel.from_pretrained(config.model.id, model_options(config))


# What resolving can say about a model id that only changing the config (or installing what the
# message names) fixes; anything else (a registry that does not answer) is not the config's fault.
MODEL_CONFIG_ERRORS = (ModelNotFoundError, ModelFormatError, UnknownArchitectureError, MissingDependencyError)


async def resolve_models(config: Config, file: str | None = None) -> None:
    """Resolve every model the config names as loading would (providers asked, a model file parsed,
    nothing downloaded), so a misspelled id or a file that is no model is a ConfigError at its key
    (`$.model.id`, `$.stages[i].model`) before anything starts."""
    try:
        options = model_options(config)
    except ParameterError as exc:
        raise ConfigError(exc.message, "$.model", file) from exc
    for model_id, path in _named_models(config):
        try:
            await resolve(model_id, options)
        except MODEL_CONFIG_ERRORS as exc:
            raise ConfigError(exc.message, path, file) from exc


def _named_models(config: Config) -> list[tuple[str, str]]:
    """(model id, key path) of the main model and of each stage that loads one of its own."""
    named = [(config.model.id, "$.model.id")]
    for index, stage in enumerate(config.stages):
        for key in _MODEL_KEYS.get(type(stage), ()):
            if (model_id := getattr(stage, key)) and model_id != config.model.id:
                named.append((model_id, f"$.stages[{index}].{key}"))
    return named


_MODEL_KEYS = {  # the keys of each stage table that name a model to load
    ModelStageConfig: ("model",),
    AnonymizeStageConfig: ("model",),
    ClassifyStageConfig: ("model",),
    TrackStageConfig: ("appearance_model",),
}


def input_size(model: DetectionModel, frame: Frame) -> tuple[int, int]:
    """The input (width, height) the model runs `frame` at: fitted to the frame's shape when the
    model fits its input to frames (320 x 192 for 16:9 at 320), else its own. A model of the
    caller's own that says nothing of its input (only `info` and `detect`) runs frames as they come."""
    if getattr(model, "spec", None) is None:
        return frame.width, frame.height
    if getattr(model, "fit_to_frames", False) and model.stride is not None:
        return fitted_size(frame.width, frame.height, model.spec, model.stride)
    return model.spec.width_height


def cost_key(model: DetectionModel) -> Callable[[Frame], CostKey]:
    """What a batch's cost depends on: the backend and the input size the model runs the frame at."""
    return lambda frame: CostKey(model.info.backend, *input_size(model, frame))


@asynccontextmanager
async def open(
    config: str | Path | dict[str, Any] | Config,
    *,
    sinks: Sequence[Sink] = (),
    model: DetectionModel | None = None,
    keep_alive: bool = False,
    results: bool = True,
    shutdown_timeout_s: float = 10.0,
    resume: dict[str, tuple[int, float | None]] | None = None,
    observers: Sequence[Observer] = (),
) -> AsyncIterator[Stream]:
    """Run a pipeline for the duration of the `async with` block; iterate the stream for results.

    The pipeline ends when every source has ended, unless `keep_alive` (sources may be added later;
    `stop()` ends it). Leaving the block early stops the sources and lets frames already read reach
    the sinks. With `results=False` the stream is not iterated (results go to the sinks only), so
    nobody has to read it for the pipeline to keep going. Leaving waits at most `shutdown_timeout_s`
    for the sinks to take what is in flight; a sink still stuck then is cut off (and logged).
    `resume` maps file source ids to the (index, pts) of the last frame a previous run delivered
    (see service.checkpoint), and makes the config's file sinks continue their files; `sinks` are
    more sinks, each a subclass of `streamer.sinks.Sink`, used as they were built (give one
    `resume=True` yourself). `observers` see every batch, stage call and sink write.
    """
    for sink in sinks:
        if not isinstance(sink, Sink):
            raise TypeError(f"{sink!r} is not a Sink: subclass streamer.sinks.Sink (see streamer/sinks/base.py)")
    config = load_config(config)
    load_started = time.monotonic()
    if model is None:
        model = await AutoModel.load(config.model.id, model_options(config))
    load_seconds = time.monotonic() - load_started
    # A restarted job: file sinks from the config continue their files instead of replacing them.
    all_sinks = [build_sink(sink, i, resume=resume is not None) for i, sink in enumerate(config.sinks)] + list(sinks)
    stages = [await build_stage(stage, i, model.info) for i, stage in enumerate(config.stages)]
    stream = Stream(config, model, all_sinks, stages, keep_alive=keep_alive, results=results, resume=resume)
    stream.model_load_seconds = load_seconds
    for observer in observers:
        stream.observers.add(observer)
    with unwrapped_groups():
        async with anyio.create_task_group() as group:
            await group.start(stream.run)
            try:
                yield stream
            finally:
                stream.stop()
                with anyio.move_on_after(shutdown_timeout_s) as deadline:
                    await stream.wait()
                    await stream.finished.wait()
                stream.close_results()
                if deadline.cancelled_caught:
                    log.warning("sinks still busy %.1f s after stop: cut off (%s)", shutdown_timeout_s, stream.summary.sinks)
                    group.cancel_scope.cancel()


class Stream:
    """A running pipeline: `async for result in stream`, `await stream.wait()`, `stream.stop()`."""

    def __init__(
        self,
        config: Config,
        model: DetectionModel,
        sinks: list[Sink],
        stages: list[Stage],
        *,
        keep_alive: bool = False,
        results: bool = True,
        resume: dict[str, tuple[int, float | None]] | None = None,
    ) -> None:
        self.config = config
        self.model = model
        self.topics = TopicSink()
        self.sinks = [*sinks, self.topics]
        self.stages = stages
        self.stage_names = [f"{i}:{getattr(stage, 'name', type(stage).__name__)}" for i, stage in enumerate(stages)]
        self.observers = Observers()
        self.model_load_seconds = 0.0
        self.sink_queues: dict[str, SinkQueue] = {}
        self.resume = dict(resume or {})
        self.workers = config.model.workers or max(1, min(4, os.cpu_count() or 1))
        self.batcher = Batcher(
            config.batching.max_batch_size, config.batching.max_wait_ms, keep_alive=keep_alive, cost_key=cost_key(model)
        )
        self.summary = Summary(model=model.info, outputs=[sink.describe() for sink in sinks], costs=self.batcher.costs)
        self.sources = SourceSet(self.batcher, self.summary)
        self._stopping = False
        self._iterable = results
        self._results_send, self._results = anyio.create_memory_object_stream[Result](64)
        self._inference_threads = anyio.CapacityLimiter(self.workers)
        self._taking = anyio.Lock()
        self.finished = anyio.Event()
        self._sequence = 0
        self._inferred: MemoryObjectReceiveStream[Inferred] | None = None
        self._out_of_order = 0  # batches inferred early, waiting for an earlier one

    def __aiter__(self) -> AsyncIterator[Result]:
        if not self._iterable:
            raise TypeError("this stream was opened with results=False: its results go to the sinks only")
        return self._results.__aiter__()

    @property
    def stopping(self) -> bool:
        return self._stopping

    def stop(self) -> None:
        """Stop reading sources; frames already read still flow to the sinks. Safe to call twice."""
        if not self._stopping:
            self._stopping = True
            self.sources.stop_all()
            self.batcher.close()

    def add_source(self, source: SourceConfig | dict[str, Any]) -> str:
        """Start another source while the pipeline runs; returns its id."""
        config = source_config(source, taken=set(self.sources.readers))  # a removed source's id may return
        if self._stopping:
            raise ConfigError("the pipeline is stopping: no source can be added", "$")
        self.sources.add(config)
        return config.id  # type: ignore[return-value]

    def remove_source(self, source_id: str) -> None:
        """Stop one source; what it already queued still reaches the sinks."""
        self._running_reader(source_id)
        self.sources.remove(source_id)

    def pause_source(self, source_id: str) -> None:
        """Hold a source: a file waits where it is, a camera stays connected and its frames are discarded."""
        self._running_reader(source_id)
        self.sources.pause(source_id)

    def resume_source(self, source_id: str) -> None:
        self._running_reader(source_id)
        self.sources.resume(source_id)

    def _running_reader(self, source_id: str) -> None:
        if source_id not in self.sources.readers:
            raise ConfigError(f"no running source has id {source_id!r}", "$")

    @property
    def stage_backlog(self) -> int:
        """Batches the model has finished that wait for the stages (in the channel or for order)."""
        waiting = self._inferred.statistics().current_buffer_used if self._inferred is not None else 0
        return waiting + self._out_of_order

    @property
    def ready(self) -> bool:
        """The model is loaded (it is, once a Stream exists) and at least one source is running."""
        return any(state is SourceState.RUNNING for state in self.sources.states.values())

    def source_state(self, source_id: str) -> SourceState | None:
        return self.sources.states.get(source_id)

    async def wait_for_state(self, source_id: str, *states: SourceState) -> SourceState:
        """Wait until the source reaches one of `states` (wrap in anyio.fail_after for a limit)."""
        return await self.sources.wait_for_state(source_id, *states)

    def subscribe(self, pattern: str, callback: Callable[[Result], Any]) -> Subscription:
        """Call `callback(result)` for results on topics matching an MQTT-style filter.

        Topics are `<source>/detections` and `<source>/detections/<class name>`; `+` matches one
        level and `#` the rest, e.g. `cam1/detections`, `+/detections/person`, `#`. Sync callbacks
        run in a worker thread, async ones are awaited; one that raises is logged and isolated.
        """
        return self.topics.subscribe(pattern, callback)

    def on_source_event(self, listener: Callable[[SourceEvent], None]) -> None:
        """Call `listener(event)` at every source state change (on the event loop: keep it quick)."""
        self.sources.subscribe(listener)

    def close_results(self) -> None:
        self._results.close()

    async def wait(self) -> Summary:
        """Consume the remaining results until the pipeline ends; returns the run's summary."""
        async for _ in self._results:
            pass
        return self.summary

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        self.summary.started = time.monotonic()
        async with anyio.create_task_group() as group:
            sink_inputs = [await group.start(self._drive_sink, sink) for sink in self.sinks]
            inferred_send, inferred = anyio.create_memory_object_stream[Inferred](self.workers)
            self._inferred = inferred
            self.sources.start(group, self.config.sources, self.resume)
            async with inferred_send:
                for _ in range(self.workers):
                    group.start_soon(self._infer, inferred_send.clone())
            group.start_soon(self._deliver, inferred, sink_inputs)
            task_status.started()
        self.sources.final_counts()
        self.summary.finished = time.monotonic()
        self.finished.set()

    async def _next_batch(self) -> tuple[int, list[Frame]] | None:
        """The next batch and its sequence number, taken only by a worker that is free, so frames
        wait in their source's queue (where `latest` can still replace them), not in a channel."""
        async with self._taking:
            frames = await self.batcher.next_batch()
            if frames is None:
                return None
            self._sequence += 1
            return self._sequence - 1, frames

    async def _infer(self, send: MemoryObjectSendStream[Inferred]) -> None:
        async with send:
            while (batch := await self._next_batch()) is not None:
                sequence, frames = batch
                detections, seconds = await anyio.to_thread.run_sync(
                    self._timed_detect, frames, limiter=self._inference_threads
                )
                self.batcher.batch_done(frames, seconds)
                self.observers.batch_done(len(frames), seconds)
                self.summary.batches += 1
                await send.send((sequence, frames, detections))

    def _timed_detect(self, frames: list[Frame]) -> tuple[list[Any], float]:
        """In the worker thread: the model's results and its own time, without the hops to and from
        the event loop (which a loaded machine stretches, whatever the batch size)."""
        started = time.perf_counter()
        detections = self.model.detect(frames)
        return detections, time.perf_counter() - started

    async def _deliver(
        self, inferred: MemoryObjectReceiveStream[Inferred], sink_inputs: list[SinkQueue]
    ) -> None:
        """Put batches back in order, run the stages, and hand each result to every sink that wants it."""
        waiting: dict[int, tuple[list[Frame], list[Any]]] = {}
        next_sequence = 0
        async with inferred, self._results_send:
            try:
                async for sequence, frames, detections in inferred:
                    waiting[sequence] = (frames, detections)
                    while next_sequence in waiting:
                        for frame, found in zip(*waiting.pop(next_sequence)):
                            await self._publish(Result(frame, found, self.model.info), sink_inputs)
                        next_sequence += 1
                    self._out_of_order = len(waiting)
            finally:
                for queue in sink_inputs:
                    queue.close()

    async def _publish(self, result: Result, sink_inputs: list[SinkQueue]) -> None:
        """Run the stages, then hand the result and the events they raised to the sinks that take them.

        Events go out even when a later stage dropped the frame: they happened."""
        self.summary.count_frame(result.source_id)
        published, events = await self._run_stages(result)
        items: list[Result | Event] = [published] if published is not None else []
        items += events
        self.summary.events += len(events)
        for item in items:
            for sink, queue in zip(self.sinks, sink_inputs):
                if accepts(sink, item):
                    await queue.put(item)
        if published is None:
            return
        self.summary.detections += len(published.detections)
        if self._iterable:
            await self._results_send.send(published)

    async def _run_stages(self, result: Result) -> tuple[Result | None, list[Event]]:
        """The stages in order (timed for the observers): the result (None once one dropped it) and
        every event raised on the way, also when a stage returned a new Result instead of its input."""
        for stage, name in zip(self.stages, self.stage_names):
            started = time.perf_counter()
            returned = await stage(result)
            self.observers.stage_done(name, time.perf_counter() - started)
            if returned is None:
                return None, result.events
            if returned is not result:
                returned.events[:0] = [event for event in result.events if event not in returned.events]
            result = returned
        return result, result.events

    async def _drive_sink(self, sink: Sink, *, task_status: TaskStatus[SinkQueue]) -> None:
        name = sink.describe()
        report = self.summary.sinks.setdefault(name, SinkReport(name))
        queue = SinkQueue(sink.queue_size, sink.overflow, report)
        self.sink_queues[name] = queue
        async with sink:
            task_status.started(queue)
            await queue.feed(sink, lambda item: self.observers.sink_wrote(name, item))
