"""A fleet worker's fencing, without Ray: the real pipeline on the worker's host, its leases and owner files."""

from __future__ import annotations

import time

import anyio
import pytest

from streamer.cluster import slots
from streamer.cluster.worker import WorkerHost
from streamer.config import load_config
from tests.service.helpers import until

pytest.importorskip("aiohttp")


def host_for(state_dir, hang_timeout_s=60.0) -> WorkerHost:
    config = load_config({
        "sources": [{"type": "lavfi", "graph": "testsrc2"}],  # the fleet's; a worker starts with none of them
        "batching": {"max_batch_size": 2, "max_wait_ms": 5},
        "cluster": {"state_dir": str(state_dir), "ping_interval_s": 0.05, "hang_timeout_s": hang_timeout_s},
    })
    return WorkerHost(config, config.cluster, slot=3, node="here")


def camera(id: str) -> dict:
    return {"type": "lavfi", "id": id, "graph": "testsrc2=size=160x96:rate=10"}


async def running_host(state_dir, group, **options) -> WorkerHost:
    host = host_for(state_dir, **options)
    await group.start(host.serve)
    return host


async def _now(value):
    return value


async def add_cameras(host: WorkerHost, state_dir, *ids: str) -> None:
    """Start each camera on the host under epoch 1, with its owner file saying so (as the coordinator does)."""
    for id in ids:
        slots.write_owner(state_dir, id, 1, host.slot)
        await host.add(camera(id), 1)


async def test_worker_when_a_newer_owner_holds_its_camera_stops_it_and_keeps_the_others(tmp_path):
    async with anyio.create_task_group() as group:
        host = await running_host(tmp_path, group)
        await add_cameras(host, tmp_path, "cam0", "cam1")
        await until(lambda: _now(host.report()["sources"]["cam0"]["frames"] > 0), timeout=20)
        slots.write_owner(tmp_path, "cam0", 2, 0)  # the coordinator moved it while cut off from us
        await until(lambda: _now("cam0" not in host.stream.sources.readers), timeout=5)
        assert host.fenced == 1 and set(host.epochs) == {"cam1"}
        assert "cam1" in host.stream.sources.readers
        host.close()


async def test_worker_when_no_ping_comes_for_the_hang_timeout_stops_every_source(tmp_path):
    async with anyio.create_task_group() as group:
        host = await running_host(tmp_path, group, hang_timeout_s=0.5)
        await add_cameras(host, tmp_path, "cam0")
        host.ping({"cam0": 1}, issued=1)
        started = time.monotonic()
        await until(lambda: _now(not host.epochs), timeout=5)
        assert time.monotonic() - started >= 0.4 and host.fenced == 1
        assert "cam0" not in host.stream.sources.readers
        host.close()


async def test_worker_when_a_ping_no_longer_leases_a_source_stops_it(tmp_path):
    async with anyio.create_task_group() as group:
        host = await running_host(tmp_path, group)
        await add_cameras(host, tmp_path, "cam0", "cam1")
        report = host.ping({"cam1": 1}, issued=1)
        assert set(report["sources"]) == {"cam1"} and host.fenced == 1
        assert set(host.stream.sources.readers) == {"cam1"}
        host.close()


async def test_worker_when_a_ping_was_issued_before_a_placement_keeps_that_source(tmp_path):
    async with anyio.create_task_group() as group:
        host = await running_host(tmp_path, group)
        slots.write_owner(tmp_path, "cam0", 5, host.slot)
        await host.add(camera("cam0"), 5)
        report = host.ping({}, issued=4)  # its leases were read before cam0 was placed here
        assert set(report["sources"]) == {"cam0"} and host.fenced == 0
        host.close()
