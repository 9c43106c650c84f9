"""The coordinator: owns the table source -> worker, watches the workers, moves sources off lost ones.

It runs in the driver (`streamer cluster run`), on the driver's event loop, and talks to the
workers through small Ray calls only. Placement: a new source goes to the least-loaded worker that
is up and under `max_sources_per_worker` (the lowest slot on a tie); a placed source stays where it
is until its worker is lost. Each placement raises the source's epoch and writes its owner file
(slots.py) before the worker is asked to start it.

A worker is lost when the call the coordinator keeps in flight on it (`vigil`) fails (its process
died, its node went), when it answers a ping as a new start (it died between two pings), or when a
ping has had no answer for `hang_timeout_s` (hung: Ray is then asked to kill and restart it). Its
sources are placed again on the survivors at once, file sources resuming from their checkpoints;
those that find no room wait and are placed when a worker has room again. Ray restarts the actor
(`max_restarts=-1`); once it answers again it takes new sources, and nothing moves back to it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import anyio
import msgspec

from ..config import Config
from ..config.loader import source_config
from ..config.schema import ClusterConfig, SourceConfig
from ..errors import ClusterError, ConfigError
from . import slots
from .worker import actor_class

log = logging.getLogger("streamer.cluster")

START_TIMEOUT_S = 300.0  # a worker's first answer: Ray schedules it, it loads its model
CALL_TIMEOUT_S = 30.0  # an add, remove, pause or status on a worker that is up
ENDED = frozenset({"ended", "failed"})  # a source in such a state is not moved: it is done


class FleetFull(Exception):
    """No worker that is up has room for another source."""


@dataclass
class Slot:
    """One worker slot: its actor, and what its latest answer said."""

    index: int
    handle: Any
    up: bool = False
    start: str | None = None  # the start id of the worker that answered last
    node: str | None = None
    report: dict[str, Any] = field(default_factory=dict)
    lost: int = 0  # times it was lost
    lost_at: float | None = None  # Unix time it was last lost


@dataclass
class Placement:
    """Where one source runs (`slot` None while it waits for room) and its fencing epoch."""

    config: SourceConfig
    slot: int | None = None
    epoch: int = 0
    paused: bool = False
    waiting_since: float | None = None  # when it lost its worker (for the reassign time)
    started_at: float | None = None  # when its worker said it started it
    state: str = "connecting"


class Coordinator:
    def __init__(self, config: Config, ray: Any) -> None:
        assert config.cluster is not None
        self.config = config
        self.cluster: ClusterConfig = config.cluster
        self.ray = ray
        self.slots: list[Slot] = []
        self.placements: dict[str, Placement] = {}
        self.reassignments = 0
        self.reassign_seconds: list[float] = []
        self.closing = False
        # One epoch counter for every placement, from the clock, so it also grows across restarts of
        # the coordinator: a ping's `issued` says which placements its leases already know of.
        self._epoch = time.time_ns() // 1000
        self._lock = anyio.Lock()
        self._listeners: list[Any] = []  # called with (source id, seconds) at each reassignment

    # ---- start and stop ------------------------------------------------------------------------

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        """Start the workers, place the config's sources, then watch the fleet until cancelled."""
        actor = actor_class(self.ray, self.cluster)
        table = msgspec.to_builtins(self.config)
        self.slots = [Slot(index, actor.remote(table, index)) for index in range(self.cluster.workers)]
        async with anyio.create_task_group() as group:
            with anyio.fail_after(START_TIMEOUT_S):
                async with anyio.create_task_group() as first:
                    for slot in self.slots:
                        first.start_soon(self._first_answer, slot)
            for source in self.config.sources:
                self.placements[source.id] = Placement(source)  # type: ignore[index]
            await self._place_waiting()
            for slot in self.slots:
                group.start_soon(self._keep_pinging, slot)
                group.start_soon(self._keep_vigil, slot)
            task_status.started()

    async def _first_answer(self, slot: Slot) -> None:
        try:
            self._answered(slot, await slot.handle.ping.remote({}, self._epoch))
        except Exception as exc:  # the actor's __init__ failed: the model, a sink's folder ...
            raise ClusterError(f"worker {slot.index} did not start: {_cause(exc)}") from exc

    async def close(self) -> None:
        """Ask every worker that is up to stop its sources and drain its sinks."""
        self.closing = True
        with anyio.move_on_after(self.config.run.drain_timeout_s + 5):
            async with anyio.create_task_group() as group:
                for slot in self.slots:
                    if slot.up:
                        group.start_soon(self._close_worker, slot)

    def release(self) -> None:
        """End every worker for good (Ray would otherwise restart it): the fleet's CPUs are free again."""
        for slot in self.slots:
            self.ray.kill(slot.handle, no_restart=True)

    async def _close_worker(self, slot: Slot) -> None:
        try:
            await slot.handle.close.remote()
        except Exception as exc:
            log.warning("worker %d did not close cleanly: %s", slot.index, _cause(exc))

    # ---- watching ------------------------------------------------------------------------------

    async def _keep_pinging(self, slot: Slot) -> None:
        """Ping with the slot's leases; a worker that is up and does not answer in time is hung."""
        while not self.closing:
            leases = {source_id: p.epoch for source_id, p in self.placements.items() if p.slot == slot.index}
            timeout = self.cluster.hang_timeout_s if slot.up else START_TIMEOUT_S
            sent = time.monotonic()
            try:
                with anyio.fail_after(timeout):
                    report = await slot.handle.ping.remote(leases, self._epoch)
            except TimeoutError:
                if slot.up:
                    await self._lost(slot, f"no answer to pings for {timeout} s (hung)")
                    await anyio.to_thread.run_sync(lambda: self.ray.kill(slot.handle, no_restart=False))
            except Exception as exc:
                await self._lost(slot, _cause(exc))
            else:
                if slot.start is not None and report["start"] != slot.start:
                    await self._lost(slot, "it restarted")
                self._answered(slot, report)
                self._dropped_by(slot, report, sent)
                await self._place_waiting()
            await anyio.sleep(self.cluster.ping_interval_s)

    async def _keep_vigil(self, slot: Slot) -> None:
        """One call always in flight on the worker: it fails the moment the worker's process dies."""
        while not self.closing:
            try:
                await slot.handle.vigil.remote()
            except Exception as exc:
                await self._lost(slot, _cause(exc))
            while not slot.up:
                await anyio.sleep(self.cluster.ping_interval_s / 2)

    def _answered(self, slot: Slot, report: dict[str, Any]) -> None:
        if not slot.up:
            log.info("worker %d is up on node %s (pid %s)", slot.index, report["node"][:12], report["pid"])
        slot.up, slot.start, slot.node, slot.report = True, report["start"], report["node"], report
        for source_id, seen in report["sources"].items():
            placement = self.placements.get(source_id)
            if placement is not None and placement.slot == slot.index:
                placement.state = seen["state"]

    def _dropped_by(self, slot: Slot, report: dict[str, Any], sent: float) -> None:
        """Sources the worker no longer runs though it had started them before this ping was sent
        (it fenced itself: no ping reached it for hang_timeout_s): they wait to be placed again."""
        for source_id, placement in self.placements.items():
            started = placement.started_at
            if placement.slot == slot.index and started is not None and started < sent and source_id not in report["sources"]:
                if placement.state not in ENDED:
                    log.warning("worker %d stopped %s on its own (it heard no ping): placing it again", slot.index, source_id)
                    placement.slot, placement.started_at, placement.waiting_since = None, None, time.monotonic()

    async def _lost(self, slot: Slot, why: str) -> None:
        """Take the slot's sources off it and place them on the survivors."""
        if not slot.up or self.closing:
            return
        slot.up, slot.lost, slot.lost_at = False, slot.lost + 1, time.time()
        now = time.monotonic()
        moved = []
        for source_id, placement in self.placements.items():
            if placement.slot == slot.index:
                placement.slot, placement.started_at = None, None
                if placement.state not in ENDED:
                    placement.waiting_since = now
                    moved.append(source_id)
        log.warning("worker %d lost (%s): moving %s", slot.index, why, ", ".join(moved) or "nothing")
        await self._place_waiting()

    # ---- placement -------------------------------------------------------------------------------

    def load(self) -> dict[int, int]:
        counts = {slot.index: 0 for slot in self.slots if slot.up}
        for placement in self.placements.values():
            if placement.slot in counts:
                counts[placement.slot] += 1  # type: ignore[index]
        return counts

    def choose(self) -> Slot | None:
        """The least-loaded worker that is up and under the cap (the lowest slot on a tie)."""
        room = [(count, index) for index, count in self.load().items() if count < self.cluster.max_sources_per_worker]
        return self.slots[min(room)[1]] if room else None

    async def _place_waiting(self) -> None:
        async with self._lock:
            for source_id, placement in list(self.placements.items()):
                if placement.slot is None and placement.state not in ENDED and (slot := self.choose()) is not None:
                    await self._place(placement, slot)

    async def _place(self, placement: Placement, slot: Slot) -> dict[str, Any] | None:
        """Start the source on `slot` under a new epoch; None if the worker failed meanwhile."""
        source_id = placement.config.id
        # Leased from now on: a ping sent while the worker starts it must not take it away again.
        placement.epoch, placement.slot = self._next_epoch(), slot.index
        await anyio.to_thread.run_sync(slots.write_owner, self.cluster.state_dir, source_id, placement.epoch, slot.index)
        try:
            with anyio.fail_after(CALL_TIMEOUT_S):
                answer = await slot.handle.add_source.remote(msgspec.to_builtins(placement.config), placement.epoch)
                if placement.paused:
                    answer["state"] = await slot.handle.pause_source.remote(source_id, True)
        except Exception as exc:
            log.warning("worker %d could not start %s: %s", slot.index, source_id, _cause(exc))
            placement.slot = None
            return None
        placement.state, placement.started_at = answer["state"], time.monotonic()
        if placement.waiting_since is not None:
            seconds = time.monotonic() - placement.waiting_since
            placement.waiting_since = None
            self.reassignments += 1
            self.reassign_seconds.append(seconds)
            for listener in self._listeners:
                listener(source_id, seconds)
            log.warning("source %s moved to worker %d in %.2f s", source_id, slot.index, seconds)
        return answer

    def _next_epoch(self) -> int:
        self._epoch += 1
        return self._epoch

    def on_reassign(self, listener: Any) -> None:
        self._listeners.append(listener)

    # ---- what the API asks ---------------------------------------------------------------------

    async def add(self, source: SourceConfig) -> dict[str, Any]:
        """Place a new source (its id already checked against the fleet's); FleetFull when no room."""
        async with self._lock:
            slot = self.choose()
            if slot is None:
                raise FleetFull(f"every worker that is up runs {self.cluster.max_sources_per_worker} sources (max_sources_per_worker)")
            placement = Placement(source)
            self.placements[source.id] = placement  # type: ignore[index]
            answer = await self._place(placement, slot)
            if answer is None:
                del self.placements[source.id]  # type: ignore[arg-type]
                raise FleetFull(f"worker {slot.index} failed while starting {source.id}: try again")
            return answer

    def checked(self, table: dict[str, Any]) -> SourceConfig:
        """One source table decoded, its id unique in the whole fleet (ConfigError otherwise)."""
        return source_config(table, taken=set(self.placements))

    async def remove(self, source_id: str) -> None:
        async with self._lock:
            placement = self.placements.pop(source_id)
            try:
                if placement.slot is not None:
                    await self._call(self.slots[placement.slot], "remove_source", source_id)
            finally:  # a worker cut off from us stops it when it reads the owner file
                await anyio.to_thread.run_sync(slots.write_owner, self.cluster.state_dir, source_id, self._next_epoch(), -1)

    async def pause(self, source_id: str, paused: bool) -> str:
        placement = self.placements[source_id]
        placement.paused = paused
        if placement.slot is None:
            return "paused" if paused else "connecting"
        placement.state = await self._call(self.slots[placement.slot], "pause_source", source_id, paused)
        return placement.state

    async def worker_status(self, slot: Slot) -> dict[str, Any] | None:
        if not slot.up:
            return None
        try:
            return await self._call(slot, "status", timeout=self.cluster.hang_timeout_s)
        except (Exception, TimeoutError):
            return None

    async def worker_metrics(self, slot: Slot) -> str:
        if not slot.up:
            return ""
        try:
            return await self._call(slot, "metrics", timeout=self.cluster.hang_timeout_s)
        except (Exception, TimeoutError):
            return ""

    async def _call(self, slot: Slot, method: str, *args: Any, timeout: float = CALL_TIMEOUT_S) -> Any:
        with anyio.fail_after(timeout):
            return await getattr(slot.handle, method).remote(*args)


def _cause(exc: BaseException) -> str:
    """What a failed Ray call says, without Ray's traceback text."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {cause}"
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def unknown_source(source_id: str) -> ConfigError:
    return ConfigError(f"no source in the fleet has id {source_id!r}", "$")
