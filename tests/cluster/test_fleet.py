"""The fleet on a real Ray cluster (head + two nodes on loopback): placement, the coordinator's API and
metrics, and failover when a worker is SIGKILLed, its node removed, or it hangs (SIGSTOP), with a real
webhook receiver and a real mosquitto seeing every result at least once."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import signal
import time
from collections import Counter
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import pytest

from streamer.cluster.run import Fleet, open_fleet
from streamer.config import load_config
from tests.cluster.conftest import add_node
from tests.media import write_clip
from tests.service.helpers import get_json, parse, until
from tests.sinks.mosquitto import MISSING_REASON, Mosquitto, mosquitto_binary
from tests.sinks.receiver import running_receiver

GRAPH = "testsrc2=size=160x96:rate=10"


def lavfi(id: str) -> dict[str, Any]:
    return {"type": "lavfi", "id": id, "graph": GRAPH}


@asynccontextmanager
async def fleet(state_dir: Path, sources: list[dict[str, Any]], sinks: list[dict[str, Any]] = (), **cluster: Any) -> AsyncIterator[tuple[Fleet, aiohttp.ClientSession]]:  # type: ignore[assignment]
    config = load_config({
        "sources": sources,
        "batching": {"max_batch_size": 2, "max_wait_ms": 5},
        "sinks": list(sinks),
        "server": {"port": 0},
        "run": {"drain_timeout_s": 5, "checkpoint_interval_s": 0.25},
        "cluster": {"workers": 2, "state_dir": str(state_dir), "ping_interval_s": 0.25, "hang_timeout_s": 1.5, **cluster},
    })
    async with open_fleet(config) as running:
        assert running.server is not None
        async with aiohttp.ClientSession(running.server.url) as http:
            yield running, http


async def sources_of(http: aiohttp.ClientSession) -> dict[str, dict[str, Any]]:
    status, body = await get_json(http, "/sources")
    assert status == 200, body
    return {source["id"]: source for source in body["sources"]}


async def all_running(http: aiohttp.ClientSession, ids: set[str]) -> dict[str, dict[str, Any]] | None:
    sources = await sources_of(http)
    return sources if {i for i, s in sources.items() if s["state"] == "running"} >= ids else None


def jsonl_records(state_dir: Path) -> list[dict[str, Any]]:
    """Every line every start of every slot wrote (the fleet's own record of its results)."""
    return [json.loads(line) for path in sorted(state_dir.glob("slot-*/*.jsonl")) for line in path.read_text().splitlines()]


def identity(result: dict[str, Any]) -> tuple[str, int, float]:
    return result["source"], result["frame_index"], result["wall_time"]


async def test_fleet_when_started_spreads_four_cameras_two_and_two_over_loopback_nodes(ray_cluster, tmp_path):
    import ray

    nodes = [node["NodeManagerAddress"] for node in ray.nodes() if node["Alive"]]
    assert len(nodes) == 3 and all(ipaddress.ip_address(address).is_loopback for address in nodes), nodes
    ids = {f"cam{i}" for i in range(4)}
    async with fleet(tmp_path, [lavfi(i) for i in sorted(ids)]) as (running, http):
        sources = await until(lambda: all_running(http, ids), timeout=30)
        assert Counter(source["worker"] for source in sources.values()) == {0: 2, 1: 2}
        status, body = await get_json(http, "/status")
        assert status == 200 and body["ready"] is True
        assert {worker["node"] for worker in body["workers"]} == {slot.node for slot in running.coordinator.slots}
        shas = {worker["model"]["sha256"] for worker in body["workers"]}
        assert len(shas) == 1 and len(shas.pop()) == 64  # every worker loaded the very same package

        async def processed() -> dict[str, float] | None:
            async with http.get("/metrics") as response:
                samples = parse(await response.text())
            found = {dict(labels)["source"]: (dict(labels)["worker"], value) for (name, labels), value in samples.items()
                     if name == "streamer_source_frames_processed_total"}
            return found if len(found) == 4 and all(value > 0 for _, value in found.values()) else None

        found = await until(processed, timeout=20)
        assert {source: worker for source, (worker, _) in found.items()} == {
            source: str(sources[source]["worker"]) for source in ids
        }


async def test_fleet_api_when_sources_are_added_paused_and_removed_answers_for_the_whole_fleet(ray_cluster, tmp_path):
    async with fleet(tmp_path, [lavfi("cam0"), lavfi("cam1"), lavfi("cam2")], max_sources_per_worker=2) as (running, http):
        await until(lambda: all_running(http, {"cam0", "cam1", "cam2"}), timeout=30)
        async with http.post("/sources", json=lavfi("cam3")) as response:
            assert response.status == 201
            added = await response.json()
        assert added["worker"] == 1 and added["node"] == running.coordinator.slots[1].node  # the one with room
        async with http.post("/sources", json=lavfi("cam4")) as response:
            assert response.status == 503, await response.text()  # 2 + 2: every worker is full
        async with http.post("/sources", json=lavfi("cam3")) as response:
            assert response.status == 409
        async with http.post("/sources", json={"type": "file", "id": "f", "path": "/etc/passwd"}) as response:
            assert response.status == 403  # [server.api_sources] lists no file_roots
        async with http.post("/sources/cam0/pause") as response:
            assert response.status == 200 and (await response.json())["state"] == "paused"
        assert (await sources_of(http))["cam0"]["state"] == "paused"
        async with http.post("/sources/cam0/resume") as response:
            assert response.status == 200 and (await response.json())["state"] == "running"
        async with http.delete("/sources/cam1") as response:
            assert response.status == 204
        async with http.delete("/sources/cam1") as response:
            assert response.status == 404
        assert "cam1" not in await sources_of(http)
        async with http.post("/sources", json=lavfi("cam4")) as response:
            assert response.status == 201 and (await response.json())["worker"] == 1  # cam1's room
        await until(lambda: all_running(http, {"cam0", "cam2", "cam3", "cam4"}), timeout=30)


@pytest.fixture
def broker(tmp_path: Path):
    if mosquitto_binary() is None:
        pytest.skip(MISSING_REASON)
    pytest.importorskip("aiomqtt", reason="needs aiomqtt: pip install 'streamer[mqtt]'")
    with Mosquitto(tmp_path / "mosquitto") as running:
        yield running


@asynccontextmanager
async def subscriber(broker: Mosquitto) -> AsyncIterator[list[dict[str, Any]]]:
    """Every result published on the broker while the block runs (and shortly after it)."""
    import aiomqtt

    received: list[dict[str, Any]] = []

    async def listen(client: Any) -> None:
        async for message in client.messages:
            received.append(json.loads(message.payload))

    async with aiomqtt.Client("127.0.0.1", broker.port, identifier="fleet-test", clean_session=False) as client:
        await client.subscribe("streamer/+/detections", qos=1)
        task = asyncio.ensure_future(listen(client))
        try:
            yield received
            await asyncio.sleep(1.0)  # the last acknowledged publishes reach us
        finally:
            task.cancel()


async def test_fleet_when_a_worker_is_sigkilled_moves_its_cameras_and_file_job_and_loses_no_result(ray_cluster, tmp_path, broker):
    clip = write_clip(tmp_path / "job.mp4", frames=90, fps=30)  # 3 s, read at real time
    state = tmp_path / "state"
    async with running_receiver() as hook, subscriber(broker) as published:
        sinks = [{"type": "webhook", "url": hook.url, "backoff_s": 0.05, "backoff_max_s": 0.2},
                 {"type": "mqtt", "port": broker.port, "qos": 1, "backoff_initial_s": 0.05, "backoff_max_s": 0.2},
                 {"type": "jsonl", "path": "results.jsonl"}]
        job = {"type": "file", "id": "job", "path": str(clip), "realtime": True}
        async with fleet(state, [lavfi("cam0"), lavfi("cam1"), job], sinks) as (running, http):
            placed = await until(lambda: all_running(http, {"cam0", "cam1", "job"}), timeout=30)
            assert (placed["cam0"]["worker"], placed["job"]["worker"]) == (0, 0)
            await until(lambda: _async(any(r["source"] == "job" and r["frame_index"] >= 20 for r in hook.unique())), timeout=15)
            os.kill(running.coordinator.slots[0].report["pid"], signal.SIGKILL)
            killed_at = time.time()

            async def moved() -> bool:
                sources = await sources_of(http)
                fresh = {r["source"] for r in hook.unique() if r["wall_time"] > killed_at + 0.1}
                return sources["cam0"]["worker"] == 1 and sources["job"]["worker"] == 1 and {"cam0", "job"} <= fresh

            await until(moved, timeout=10)
            await until(lambda: _ended(http, "job"), timeout=20)
            async with http.get("/metrics") as response:
                samples = parse(await response.text())
            assert samples[("streamer_cluster_reassignments_total", frozenset())] >= 2
            assert samples[("streamer_cluster_reassign_seconds_count", frozenset())] >= 2
            await until(lambda: _async(running.coordinator.slots[0].up), timeout=20)  # Ray restarted it: it replays its spools
            await asyncio.sleep(2.0)
    produced = {identity(r) for r in jsonl_records(state)}
    delivered = {identity(r) for r in hook.unique()}
    assert produced and not produced - delivered, f"{len(produced - delivered)} results never reached the webhook"
    assert not produced - {identity(r) for r in published}, "results never reached the MQTT subscriber"
    frames = {r["frame_index"] for r in hook.unique() if r["source"] == "job"}
    assert frames == set(range(90))  # the file job resumed on the survivor and finished: no frame missing
    resumed = [json.loads(line) for path in state.glob("slot-1/*.jsonl") for line in path.read_text().splitlines()]
    assert min(r["frame_index"] for r in resumed if r["source"] == "job") > 0  # from its checkpoint, not the top


async def _async(value: Any) -> Any:
    return value


async def _ended(http: aiohttp.ClientSession, source_id: str) -> bool:
    return (await sources_of(http))[source_id]["state"] == "ended"


async def test_fleet_when_a_node_is_removed_moves_its_camera_and_ray_restarts_the_worker(ray_cluster, tmp_path):
    async with fleet(tmp_path, [lavfi("cam0"), lavfi("cam1")]) as (running, http):
        await until(lambda: all_running(http, {"cam0", "cam1"}), timeout=30)
        slot = running.coordinator.slots[0]
        first_start, node_id = slot.start, slot.node
        node = next(node for node in ray_cluster.list_all_nodes() if node.node_id == node_id)
        assert node is not ray_cluster.head_node
        add_node(ray_cluster)  # somewhere for Ray to restart the worker, and for the next tests
        ray_cluster.remove_node(node)
        sources = await until(lambda: _on(http, "cam0", 1), timeout=15)
        assert sources["cam1"]["worker"] == 1
        await until(lambda: _async(slot.up and slot.start != first_start), timeout=30)
        assert slot.node != node_id and slot.lost == 1


async def _on(http: aiohttp.ClientSession, source_id: str, worker: int) -> dict[str, dict[str, Any]] | None:
    sources = await sources_of(http)
    return sources if sources[source_id]["worker"] == worker and sources[source_id]["state"] == "running" else None


async def test_fleet_when_a_worker_hangs_moves_its_camera_and_has_ray_restart_it(ray_cluster, tmp_path):
    async with fleet(tmp_path, [lavfi("cam0"), lavfi("cam1")]) as (running, http):
        await until(lambda: all_running(http, {"cam0", "cam1"}), timeout=30)
        slot = running.coordinator.slots[0]
        pid, first_start = slot.report["pid"], slot.start
        os.kill(pid, signal.SIGSTOP)
        try:
            stopped_at = time.monotonic()
            await until(lambda: _on(http, "cam0", 1), timeout=10)
            assert time.monotonic() - stopped_at < 1.5 + 3.0  # hang_timeout_s, then the move
            status, body = await get_json(http, "/status")
            assert status == 200 and body["workers"][0]["up"] is False and body["ready"] is True
        finally:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass  # Ray has killed it already
        await until(lambda: _async(slot.up and slot.start != first_start), timeout=30)
        assert (await sources_of(http))["cam0"]["worker"] == 1  # placement stays stable: nothing moves back
