"""The running sources: a reader task and a decode thread of its own each (threads.py), their states,
and their events.

Sources can be added and removed while the pipeline runs. A stopped source's thread normally ends at
once (it checks its stop event between frames and in every wait). One stuck in FFmpeg (a camera that
does not answer) is abandoned after STUCK_GRACE_S: its task is cancelled and the thread ends on its
own at its timeout, without calling back into the event loop, which may be gone by then.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import anyio
from anyio.abc import TaskGroup
from anyio.lowlevel import EventLoopToken

from ..batcher import Batcher
from ..config.schema import SourceConfig
from ..errors import SourceError
from ..sources import FrameQueue, Source, SourceEvent, SourceState, StateChange, build_source, tolerates_damage
from ..wakeup import Wakeup
from .summary import SourceReport, Summary
from .threads import run_in_own_thread, yield_cpu

log = logging.getLogger("streamer.sources")

EVENT_HISTORY = 1000
STUCK_GRACE_S = 1.0


@dataclass
class Reader:
    source: Source
    queue: FrameQueue
    stop: threading.Event = field(default_factory=threading.Event)
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    done: anyio.Event = field(default_factory=anyio.Event)
    resumed: threading.Event = field(default_factory=threading.Event)  # cleared while paused

    def __post_init__(self) -> None:
        self.resumed.set()

    def wait_while_paused(self) -> bool:
        """In the source's thread: hold a paused file where it is; False once stopped."""
        while not self.resumed.is_set():
            if self.stop.wait(0.05):
                return False
        return True


class SourceSet:
    def __init__(self, batcher: Batcher, summary: Summary) -> None:
        self.batcher = batcher
        self.summary = summary
        self.readers: dict[str, Reader] = {}
        self.configs: dict[str, SourceConfig] = {}  # of the running sources, as given
        self._queues: dict[str, FrameQueue] = {}  # every source ever started, for the final counts
        self.states: dict[str, SourceState] = {}
        self.events: deque[SourceEvent] = deque(maxlen=EVENT_HISTORY)
        self._listeners: list[Callable[[SourceEvent], None]] = []
        self._changed = Wakeup()
        self._group: TaskGroup | None = None

    def start(
        self, group: TaskGroup, configs: list[SourceConfig], resume: dict[str, tuple[int, float | None]] | None = None
    ) -> None:
        """Start every source; those in `resume` (file sources) go on after the frame it names."""
        self._group = group
        for config in configs:
            self.add(config, (resume or {}).get(config.id))  # type: ignore[arg-type]

    def add(self, config: SourceConfig, start_after: tuple[int, float | None] | None = None) -> None:
        assert self._group is not None and config.id is not None
        source = build_source(config, start_after)
        staleness = config.staleness_ms / 1000 if config.staleness_ms else None
        queue = FrameQueue(source.id, config.queue_size, config.policy, self.batcher.notify, staleness)
        reader = Reader(source, queue)
        self.readers[source.id] = reader
        self.configs[source.id] = config
        self._queues[source.id] = queue
        self.summary.sources[source.id] = SourceReport(source.id, tolerate_damage=tolerates_damage(config))
        self.batcher.add_queue(queue, config.latency_budget_ms if config.policy == "latest" else None)
        self._group.start_soon(self._read, reader)

    def remove(self, source_id: str) -> None:
        reader = self.readers.pop(source_id)
        self.configs.pop(source_id, None)
        self._halt(reader)

    def pause(self, source_id: str) -> None:
        """Stop feeding the pipeline: a file waits where it is, a live source's frames are discarded."""
        reader = self.readers[source_id]
        if reader.resumed.is_set():
            reader.resumed.clear()
            self._record(source_id, StateChange(SourceState.PAUSED, "paused by request"))

    def resume(self, source_id: str) -> None:
        reader = self.readers[source_id]
        if not reader.resumed.is_set():
            reader.resumed.set()
            self._record(source_id, StateChange(SourceState.RUNNING, "resumed by request"))

    def queue_depths(self) -> dict[str, int]:
        return {source_id: len(reader.queue) for source_id, reader in self.readers.items()}

    def stop_all(self) -> None:
        for reader in self.readers.values():
            self._halt(reader)

    def final_counts(self) -> None:
        """Copy each queue's drop counts into the summary (the batcher keeps dropping stale frames
        from a queue after its reader ended)."""
        for source_id, queue in self._queues.items():
            report = self.summary.sources[source_id]
            report.dropped, report.stale = queue.dropped, queue.stale

    def subscribe(self, listener: Callable[[SourceEvent], None]) -> None:
        """Call `listener(event)` on the event loop at every state change (keep it quick)."""
        self._listeners.append(listener)

    async def wait_for_state(self, source_id: str, *states: SourceState) -> SourceState:
        while (state := self.states.get(source_id)) not in states:
            await self._changed.wait()
        return state  # type: ignore[return-value]

    def _halt(self, reader: Reader) -> None:
        reader.stop.set()
        reader.queue.finish()
        if self._group is not None and not reader.done.is_set():
            self._group.start_soon(self._abandon_if_stuck, reader)

    async def _abandon_if_stuck(self, reader: Reader) -> None:
        with anyio.move_on_after(STUCK_GRACE_S):
            await reader.done.wait()
            return
        log.warning("%s did not stop within %.1f s: abandoning its thread", reader.source.describe(), STUCK_GRACE_S)
        reader.scope.cancel()

    async def _read(self, reader: Reader) -> None:
        source, report = reader.source, self.summary.sources[reader.source.id]
        try:
            with reader.scope:
                await run_in_own_thread(lambda token: self._pump(reader, token), f"streamer source {source.id}")
        except Exception as exc:  # one broken source must never stop the others
            error = exc if isinstance(exc, SourceError) else SourceError(f"{source.describe()} failed: {exc!r}")
            report.error = str(error)
            if self._current(reader):
                self._record(source.id, StateChange(SourceState.FAILED, str(error)))
        finally:
            reader.done.set()
            reader.queue.finish()
            report.dropped, report.stale = reader.queue.dropped, reader.queue.stale
            report.take_counts(source.stats)
            if self._current(reader) and not self.states.get(source.id, SourceState.CONNECTING).final:
                self._record(source.id, StateChange(SourceState.ENDED, "stopped"))

    def _current(self, reader: Reader) -> bool:
        """Whether `reader` still owns its id's state (a removed source's id may have been reused)."""
        return self.readers.get(reader.source.id, reader) is reader

    def _pump(self, reader: Reader, token: EventLoopToken) -> None:
        """Runs in the source's thread: decode and queue until the source ends or is stopped. A camera
        that catches up decodes at a lower priority than the model (threads.py)."""
        report = self.summary.sources[reader.source.id]
        if reader.source.catches_up:
            yield_cpu(reader.source.describe())
        for item in reader.source.frames(reader.stop):
            report.take_counts(reader.source.stats)  # the source counts between items; _read takes the last
            if reader.stop.is_set():
                return  # stopped: the task records the end itself, and the loop may be closing
            if isinstance(item, StateChange):
                anyio.from_thread.run_sync(self._record, reader.source.id, item, token=token)
                continue
            if not reader.resumed.is_set():
                if reader.source.live:
                    report.paused += 1  # a camera stays connected; its frames are not wanted
                    continue
                if not reader.wait_while_paused():
                    return
            queued = anyio.from_thread.run_sync(reader.queue.try_put, item, token=token)  # cheap: no task per frame
            if queued is None:
                queued = anyio.from_thread.run(reader.queue.put, item, token=token)  # full: wait for room
            if not queued:
                return  # stopped while this frame was in hand: it was never handed over
            report.read += 1

    def _record(self, source_id: str, change: StateChange) -> None:
        previous = self.states.get(source_id)
        reader = self.readers.get(source_id)
        if change.state is SourceState.RUNNING and reader is not None and not reader.resumed.is_set():
            change = StateChange(SourceState.PAUSED, change.reason)  # reconnected while paused
        if previous == change.state:
            return
        self.states[source_id] = change.state
        event = SourceEvent(source_id, previous, change.state, change.reason, change.attempt)
        self.events.append(event)
        report = self.summary.sources.get(source_id)
        if report is not None:
            report.state = change.state.value
            if change.state in (SourceState.RECONNECTING, SourceState.FAILED):
                report.last_error = change.reason
        _log_event(event, change)
        for listener in self._listeners:
            listener(event)
        self._changed.notify()


def _log_event(event: SourceEvent, change: StateChange) -> None:
    level = logging.WARNING if event.state in (SourceState.RECONNECTING, SourceState.FAILED) else logging.INFO
    retry = f", retry in {change.retry_in_s:.1f} s (attempt {change.attempt})" if change.retry_in_s else ""
    reason = f": {event.reason}" if event.reason else ""
    previous = event.previous.value if event.previous else "new"
    log.log(level, "source %s: %s -> %s%s%s", event.source_id, previous, event.state.value, reason, retry)
