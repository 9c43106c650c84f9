"""The fleet's HTTP API: today's routes (service/server.py), answered for every worker at once.

    GET    /status                200  the fleet: every worker (slot, node, up, model package and
                                       sha256, its sources) and every source with its worker and node
    GET    /sources               200  {"sources": [...]}: every placed source, with `worker` and `node`
    POST   /sources               201  {"id", "state", "worker", "node"}: placed on the least-loaded worker
                                  409  the id runs somewhere in the fleet
                                  503  every worker that is up is full (or none is up)
                                  400, 403, 413, 415, 421, 422 as on one node
    DELETE /sources/{id}          204, 404; POST /sources/{id}/pause|resume 200, 404: sent to the owner
    GET    /metrics               200  every worker's metrics with `worker` and `node` labels, and the
                                       coordinator's (federation.py)
    GET    /healthz, /readyz      as on one node (ready: a worker is up and a source runs)

The middlewares (Host check, same-origin JSON, bearer token, errors as JSON) and the body and
source-policy checks are the single-node server's own: `FleetServer` subclasses `Server`.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import anyio
from aiohttp import web

from ..config.schema import ServerConfig
from ..errors import ConfigError, ServerError
from ..service.server import LOOPBACK_NAMES, Server, _error, _json_object, _refused, _token
from ..service.source_policy import check_api_source
from ..service.status import described_source
from .coordinator import Coordinator, FleetFull
from .federation import federated_exposition

log = logging.getLogger("streamer.server")


class FleetServer(Server):
    """The single-node server's checks in front of the coordinator instead of one stream."""

    def __init__(self, coordinator: Coordinator, config: ServerConfig, token: str | None) -> None:  # noqa: super not called: no stream
        self.coordinator = coordinator
        self.config = config
        self.host, self.port = config.host, config.port
        self._token = token.encode() if token is not None else None
        self._own_names = {name.lower() for name in (*LOOPBACK_NAMES, config.host)}
        self._allowed_names = {name.lower() for name in config.allowed_hosts}
        self.app = self._api_app()

    def __repr__(self) -> str:
        return f"FleetServer({self.url!r}, token={'set' if self._token else 'none'})"

    async def get_metrics(self, request: web.Request) -> web.Response:
        texts = await self._each_worker(self.coordinator.worker_metrics)
        body, content_type = federated_exposition(self.coordinator, texts, request.headers.get("Accept", ""))
        return web.Response(body=body, headers={"Content-Type": content_type})

    def _not_ready_because(self) -> str | None:
        coordinator = self.coordinator
        if not any(slot.up for slot in coordinator.slots):
            return "no worker is up"
        if any(placement.state == "running" for placement in coordinator.placements.values()):
            return None
        states = ", ".join(f"{source_id}: {placement.state}" for source_id, placement in coordinator.placements.items())
        return f"no source is running ({states or 'no sources'})"

    async def get_status(self, request: web.Request) -> web.Response:
        coordinator = self.coordinator
        bodies = await self._each_worker(coordinator.worker_status)
        workers, sources = [], []
        for slot, body in zip(coordinator.slots, bodies):
            report = slot.report
            owned = [source_id for source_id, p in coordinator.placements.items() if p.slot == slot.index]
            workers.append({"worker": slot.index, "node": slot.node, "up": slot.up, "pid": report.get("pid"),
                            "start": slot.start, "lost": slot.lost, "fenced": report.get("fenced", 0),
                            "model": (body or {}).get("model", report.get("model")), "sources": owned,
                            "frames": (body or {}).get("frames", 0)})
            for source in (body or {}).get("sources", []):
                placement = coordinator.placements.get(source["id"])
                if placement is not None and placement.slot == slot.index:
                    sources.append({**source, "worker": slot.index, "node": slot.node, "epoch": placement.epoch})
        placed = {source["id"] for source in sources}
        sources += [self._placed(source_id) for source_id in coordinator.placements if source_id not in placed]
        return web.json_response({
            "ready": self._not_ready_because() is None,
            "workers": workers,
            "sources": sources,
            "frames": sum(worker["frames"] for worker in workers),
            "reassignments": coordinator.reassignments,
        })

    async def get_sources(self, request: web.Request) -> web.Response:
        return web.json_response({"sources": [self._placed(source_id) for source_id in self.coordinator.placements]})

    def _placed(self, source_id: str) -> dict[str, Any]:
        """What the coordinator itself knows of a source: where it runs and its latest state."""
        placement = self.coordinator.placements[source_id]
        slot = self.coordinator.slots[placement.slot] if placement.slot is not None else None
        state = placement.state if slot is not None else "waiting"
        return {**self._describe(source_id), "state": state, "worker": placement.slot,
                "node": slot.node if slot is not None else None, "epoch": placement.epoch}

    async def post_source(self, request: web.Request) -> web.Response:
        body = await _json_object(request)
        taken = set(self.coordinator.placements)
        try:
            source = check_api_source(self.coordinator.checked(body), self.config.api_sources)
            answer = await self.coordinator.add(source)
        except ConfigError as exc:
            return _refused(exc, body, taken)
        except FleetFull as exc:
            return _error(503, str(exc))
        log.info("admin API: added source %s on worker %s", answer["id"], answer["worker"])
        answer = {key: answer[key] for key in ("id", "state", "worker", "node")}
        return web.json_response(answer, status=201, headers={"Location": f"/sources/{answer['id']}"})

    async def delete_source(self, request: web.Request) -> web.Response:
        source_id = self._known(request)
        await self.coordinator.remove(source_id)
        log.info("admin API: removed source %s", source_id)
        return web.Response(status=204)

    async def pause_source(self, request: web.Request) -> web.Response:
        source_id = self._known(request)
        state = await self.coordinator.pause(source_id, True)
        log.info("admin API: paused source %s", source_id)
        return web.json_response({"id": source_id, "state": state})

    async def resume_source(self, request: web.Request) -> web.Response:
        source_id = self._known(request)
        state = await self.coordinator.pause(source_id, False)
        log.info("admin API: resumed source %s", source_id)
        return web.json_response({"id": source_id, "state": state})

    def _known(self, request: web.Request) -> str:
        source_id = request.match_info["id"]
        if source_id not in self.coordinator.placements:
            raise web.HTTPNotFound(text=f"no source has id {source_id!r}")
        return source_id

    def _describe(self, source_id: str) -> dict[str, Any]:
        """Id, type and where it reads (URLs without passwords or query strings), as on one node."""
        return described_source(source_id, self.coordinator.placements[source_id].config)

    async def _each_worker(self, ask: Any) -> list[Any]:
        """`ask(slot)` for every slot at once, in slot order."""
        answers: list[Any] = [None] * len(self.coordinator.slots)

        async def one(index: int) -> None:
            answers[index] = await ask(self.coordinator.slots[index])

        async with anyio.create_task_group() as group:
            for index in range(len(answers)):
                group.start_soon(one, index)
        return answers


@asynccontextmanager
async def serve_fleet(coordinator: Coordinator, config: ServerConfig) -> AsyncIterator[FleetServer]:
    """Serve the fleet's API for the duration of the block (on this event loop)."""
    server = FleetServer(coordinator, config, _token(config.token_env))
    runner = web.AppRunner(server.app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        try:
            await web.TCPSite(runner, config.host, config.port).start()
        except OSError as exc:
            raise ServerError(f"[server] cannot listen on {server.url}: {exc.strerror or exc}") from exc
        server.port = runner.addresses[0][1]
        log.info("serving the fleet's metrics, health and admin API on %s", server.url)
        yield server
    finally:
        await runner.cleanup()
