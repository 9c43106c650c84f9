"""`streamer cluster run config.toml`: the fleet, its API, until a signal (or every file job ended).

    async with open_fleet(config) as fleet:     # Ray started or joined, workers up, sources placed
        fleet.coordinator, fleet.server         # the server is None without [server]
"""

from __future__ import annotations

import logging
import signal
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import AsyncIterator

import anyio

from ..config import Config
from ..errors import ConfigError
from ..groups import unwrapped_groups
from . import runtime
from .slots import check_fleet_config
from .coordinator import ENDED, Coordinator
from .server import FleetServer, serve_fleet

log = logging.getLogger("streamer.cluster")


@dataclass
class Fleet:
    coordinator: Coordinator
    server: FleetServer | None


def check_fleet(config: Config, file: str | None = None) -> None:
    """ConfigError for a config a fleet cannot run: no [cluster] table, or sources named by sinks or stages."""
    if config.cluster is None:
        raise ConfigError("`streamer cluster run` needs a [cluster] table (docs/cluster.md)", "$.cluster", file)
    check_fleet_config(config, file)


@asynccontextmanager
async def open_fleet(config: Config) -> AsyncIterator[Fleet]:
    """The fleet for the duration of the block; leaving it stops the sources and drains the sinks.

    A Ray already initialised in this process (a test's cluster) is used as it is; otherwise
    `[cluster] address` says which to start or join, and it is shut down on the way out."""
    check_fleet(config)
    assert config.cluster is not None
    started_here = not runtime.import_ray().is_initialized()
    ray = runtime.start(config.cluster)
    coordinator = Coordinator(config, ray)
    try:
        with unwrapped_groups():
            async with anyio.create_task_group() as group:
                await group.start(coordinator.run)
                async with AsyncExitStack() as extras:
                    server = None
                    if config.server is not None:
                        server = await extras.enter_async_context(serve_fleet(coordinator, config.server))
                    try:
                        yield Fleet(coordinator, server)
                    finally:
                        with anyio.CancelScope(shield=True):
                            await coordinator.close()
                group.cancel_scope.cancel()
    finally:
        coordinator.release()
        if started_here:
            ray.shutdown()


async def run_cluster(config: Config) -> Coordinator:
    """Run the fleet until SIGINT/SIGTERM, or, without [server], until every source has ended."""
    async with open_fleet(config) as fleet:
        async with anyio.create_task_group() as group:
            group.start_soon(_stop_on_signal, group.cancel_scope)
            if fleet.server is None:
                group.start_soon(_stop_when_ended, fleet.coordinator, group.cancel_scope)
    return fleet.coordinator


async def _stop_on_signal(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as received:
        async for signum in received:
            log.warning("%s: stopping the fleet, draining to the sinks", signal.Signals(signum).name)
            scope.cancel()
            return


async def _stop_when_ended(coordinator: Coordinator, scope: anyio.CancelScope) -> None:
    while not all(placement.state in ENDED for placement in coordinator.placements.values()):
        await anyio.sleep(0.5)
    scope.cancel()


def render(coordinator: Coordinator) -> str:
    """A few lines for the terminal at the end: each worker's frames, the reassignments."""
    lines = [f"fleet: {len(coordinator.slots)} workers, {len(coordinator.placements)} sources,"
             f" {coordinator.reassignments} reassignments"]
    for slot in coordinator.slots:
        report = slot.report
        lines.append(f"  worker {slot.index} (node {(slot.node or '?')[:12]}): {report.get('frames', 0)} frames,"
                     f" lost {slot.lost} times, sources {', '.join(report.get('sources', {})) or '-'}")
    return "\n".join(lines)
