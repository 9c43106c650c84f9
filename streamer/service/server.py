"""One HTTP server beside a running stream: Prometheus metrics, health checks, status, admin API.

    async with streamer.open(config, keep_alive=True, results=False) as stream:
        async with serve(stream, config.server) as server:     # server.port: the bound port
            await stream.wait()

Routes (JSON bodies; every error is `{"error": "...", "status": N}`):

    GET    /metrics               200  Prometheus text format (OpenMetrics if the Accept header asks);
                                       the names are listed in metrics.py
    GET    /healthz               200  {"status": "ok"}: the process is alive (never needs the token)
    GET    /readyz                200  {"ready": true}: the model is loaded and a source is running
                                  503  {"ready": false, "reason": ...} (never needs the token)
    GET    /status                200  model, uptime, totals, every source (id, type, where it
                                       reads, with passwords masked, state, last error, counts, fps,
                                       capture -> result latency p50/p99 in ms) and every sink
                                       (counts, queue depth); built by status.py
    GET    /sources               200  {"sources": [...]}: the sources the pipeline runs now
    POST   /sources               201  {"id": ..., "state": ...}: body is one source table as in the
                                       TOML, e.g. {"type": "lavfi", "id": "cam2", "graph": "testsrc2"}
                                  400  not JSON, not a JSON object, or nested more than 32 deep
                                  413  a body over 64 KiB
                                  403  it reads what [server.api_sources] does not allow (a file outside
                                       file_roots, a graph, option or webcam); names the key path
                                  409  a source with that id is running (a removed one's id may return)
                                  422  an invalid table (an id not matching ID_PATTERN too); the
                                       message names the key path, e.g. $.source.id
                                  503  the pipeline is stopping
    DELETE /sources/{id}          204  stopped and removed (what it queued still reaches the sinks)
                                  404  no such source
    POST   /sources/{id}/pause    200  {"id": ..., "state": "paused"}
    POST   /sources/{id}/resume   200  {"id": ..., "state": ...}
                                  404  no such source
    GET    /, /web/{name}, /sources/{id}/preview.jpg, /events: the live page (see page.py)
    any other path                404; a known path with another method: 405 (with an Allow header)

Before any route, for browsers (docs/security.md): every route but /healthz answers 421 to a Host
header that is not the bound address or localhost at the bound port, or a name in `allowed_hosts`
(DNS rebinding); POST and DELETE answer 403 to an Origin other than the server's own, and 415 to a
body that is not `application/json` (an empty body may come without a type, never with a form's).
No request gets a 500 unless the server has a bug (then the traceback is logged).

With `token_env`, the variable is read at start (ServerError if it is not set or empty), and every
route but /healthz, /readyz and the page's own files (no data in them) needs
`Authorization: Bearer <token>` (401 otherwise). The token is
never logged or returned. The server listens on `host` (default 127.0.0.1, this machine only);
another address needs `token_env` (the config does not load without it). Requests are not access-logged (scrapes would
flood the log); each admin action is logged at INFO.
"""

from __future__ import annotations

import hmac
import logging
import os
import re
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable

import msgspec
from aiohttp import web

from ..config.loader import source_config
from ..config.schema import ServerConfig, SourceConfig
from ..errors import ConfigError, ServerError, SourcePolicyError
from ..redact import redact
from .metrics import PipelineMetrics
from .page import PAGE_PATHS, Page
from .source_policy import check_api_source
from .status import StatusReport

if TYPE_CHECKING:
    from ..pipeline.runner import Stream

log = logging.getLogger("streamer.server")

OPEN_PATHS = frozenset({"/healthz", "/readyz"})
LOOPBACK_NAMES = ("127.0.0.1", "::1", "localhost")
ANY_HOST_PATHS = frozenset({"/healthz"})  # a probe may call the pod by its address
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
FORM_TYPES = frozenset({"text/plain", "application/x-www-form-urlencoded", "multipart/form-data"})  # no preflight
MAX_BODY_BYTES = 64 * 1024  # a source table is a few hundred bytes
MAX_JSON_DEPTH = 32
_HOST_HEADER = re.compile(r"\A(?:\[(?P<ipv6>[0-9A-Fa-f:.]+)\]|(?P<name>[^:\[\]]+))(?::(?P<port>[0-9]{1,5}))?\Z")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Server:
    """The running server: `host`, `port` (the bound one, also when the config said 0), `url`."""

    def __init__(self, stream: Stream, config: ServerConfig, metrics: PipelineMetrics, token: str | None) -> None:
        self.stream = stream
        self.config = config
        self.metrics = metrics
        self.host = config.host
        self.port = config.port
        self._token = token.encode() if token is not None else None
        self.status = StatusReport(stream, metrics.rates)  # the /status body (also what `streamer run` shows)
        self._own_names = {name.lower() for name in (*LOOPBACK_NAMES, config.host)}
        self._allowed_names = {name.lower() for name in config.allowed_hosts}
        self.app = self._api_app()
        self.page = Page(stream, self._known)  # the live page at /
        self.app.add_routes(self.page.routes())
        self.app.on_shutdown.append(self._close_page)

    def _api_app(self) -> web.Application:
        """The checks every request passes (below) in front of the API's routes; the fleet's server
        (cluster/server.py) answers the same routes for many workers."""
        middlewares = [self._errors_as_json, self._known_host, self._same_origin_json, self._authorize]
        app = web.Application(middlewares=middlewares, client_max_size=MAX_BODY_BYTES)
        app.add_routes([
            web.get("/metrics", self.get_metrics),
            web.get("/healthz", self.get_healthz),
            web.get("/readyz", self.get_readyz),
            web.get("/status", self.get_status),
            web.get("/sources", self.get_sources),
            web.post("/sources", self.post_source),
            web.delete("/sources/{id}", self.delete_source),
            web.post("/sources/{id}/pause", self.pause_source),
            web.post("/sources/{id}/resume", self.resume_source),
        ])
        return app

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def __repr__(self) -> str:
        return f"Server({self.url!r}, token={'set' if self._token else 'none'})"

    # ---- middlewares -------------------------------------------------------------------------

    @web.middleware
    async def _errors_as_json(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """aiohttp's own 404, 405 and 413 (and any HTTP error a handler raises) as a JSON body; a bug as a 500."""
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            headers = {name: value for name, value in exc.headers.items() if name.lower() in ("allow", "www-authenticate")}
            message = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else _default_message(request, exc)
            return _error(exc.status, message, headers)
        except Exception:  # the last resort: the fuzz tests find none
            log.exception("admin API: %s %r failed", request.method, request.path)
            return _error(500, "the server failed on this request; its log has the traceback")

    @web.middleware
    async def _known_host(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Only the names this server is reached by: a DNS-rebinding page sends its own name as Host."""
        host = request.headers.get("Host")
        if host is None or request.path in ANY_HOST_PATHS or self._answers_to(host):
            return await handler(request)
        return _error(421, f"this server does not answer to Host {host!r}: add the name to [server] allowed_hosts")

    def _answers_to(self, host: str) -> bool:
        """The bound address or localhost at the bound port, or a name from `allowed_hosts` at any port (a proxy's)."""
        match = _HOST_HEADER.match(host)
        if match is None:
            return False
        name = (match["ipv6"] or match["name"]).lower()
        port = int(match["port"]) if match["port"] else 80
        return name in self._allowed_names or (name in self._own_names and port == self.port)

    @web.middleware
    async def _same_origin_json(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """No change from another site's page: a foreign Origin is refused, and a body must be JSON, which a
        browser sends cross-site only after a preflight this server never grants (an empty body may omit it)."""
        if request.method not in MUTATING:
            return await handler(request)
        origin = request.headers.get("Origin")
        if origin is not None and not self._is_own_origin(origin, request):
            return _error(403, f"requests from another site's page are refused (Origin {origin!r})")
        kind = request.content_type
        if kind in FORM_TYPES or (request.body_exists and kind != "application/json"):
            return _error(415, "send the body as JSON, with 'Content-Type: application/json'")
        return await handler(request)

    def _is_own_origin(self, origin: str, request: web.Request) -> bool:
        host = request.headers.get("Host") or self.url.partition("://")[2]
        return origin.lower() in (f"http://{host}".lower(), f"https://{host}".lower())

    @web.middleware
    async def _authorize(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self._token is None or request.path in OPEN_PATHS or request.path in PAGE_PATHS:
            return await handler(request)
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self._token):
            return _error(401, "this route needs 'Authorization: Bearer <token>' with the server's token",
                          {"WWW-Authenticate": 'Bearer realm="streamer"'})
        return await handler(request)

    async def _close_page(self, app: web.Application) -> None:
        """Before aiohttp waits for the handlers: end the pages' event streams, which never end alone."""
        self.page.close()

    # ---- health and metrics ------------------------------------------------------------------

    async def get_metrics(self, request: web.Request) -> web.Response:
        body, content_type = self.metrics.exposition(request.headers.get("Accept", ""))
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def get_healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def get_readyz(self, request: web.Request) -> web.Response:
        reason = self._not_ready_because()
        if reason is None:
            return web.json_response({"ready": True})
        return web.json_response({"ready": False, "reason": reason}, status=503)

    def _not_ready_because(self) -> str | None:
        stream = self.stream
        if stream.stopping:
            return "the pipeline is stopping"
        if stream.ready:
            return None
        states = ", ".join(f"{source_id}: {self._state(source_id)}" for source_id in list(stream.sources.readers))
        return f"no source is running ({states or 'no sources'})"

    def _state(self, source_id: str) -> str:
        return self.status.state(source_id)

    # ---- status ------------------------------------------------------------------------------

    async def get_status(self, request: web.Request) -> web.Response:
        return web.json_response(self.status.body())

    # ---- admin API ---------------------------------------------------------------------------

    async def get_sources(self, request: web.Request) -> web.Response:
        sources = [{**self.status.describe_source(source_id), "state": self._state(source_id)} for source_id in list(self.stream.sources.configs)]
        return web.json_response({"sources": sources})

    async def post_source(self, request: web.Request) -> web.Response:
        body = await _json_object(request)
        if self.stream.stopping:
            return _error(503, "the pipeline is stopping: no source can be added")
        taken = set(self.stream.sources.readers)
        try:
            source_id = self.stream.add_source(self._permitted(body, taken))
        except ConfigError as exc:
            return _refused(exc, body, taken)
        self.status.remember(source_id)
        log.info("admin API: added source %s (%s)", source_id, self.status.describe_source(source_id)["type"])
        body = {"id": source_id, "state": self._state(source_id)}
        return web.json_response(body, status=201, headers={"Location": f"/sources/{source_id}"})

    def _permitted(self, body: dict[str, Any], taken: set[str]) -> SourceConfig:
        """The table, decoded and held to `[server.api_sources]` (the config file's sources are not)."""
        return check_api_source(source_config(body, taken), self.config.api_sources)

    async def delete_source(self, request: web.Request) -> web.Response:
        source_id = self._known(request)
        self.stream.remove_source(source_id)
        self.page.forget(source_id)
        log.info("admin API: removed source %s", source_id)
        return web.Response(status=204)

    async def pause_source(self, request: web.Request) -> web.Response:
        source_id = self._known(request)
        self.stream.pause_source(source_id)
        log.info("admin API: paused source %s", source_id)
        return self._state_of(source_id)

    async def resume_source(self, request: web.Request) -> web.Response:
        source_id = self._known(request)
        self.stream.resume_source(source_id)
        log.info("admin API: resumed source %s", source_id)
        return self._state_of(source_id)

    def _known(self, request: web.Request) -> str:
        source_id = request.match_info["id"]
        if source_id not in self.stream.sources.readers:
            raise web.HTTPNotFound(text=f"no source has id {source_id!r}")
        return source_id

    def _state_of(self, source_id: str) -> web.Response:
        return web.json_response({"id": source_id, "state": self._state(source_id)})


@asynccontextmanager
async def serve(stream: Stream, config: ServerConfig | None = None, metrics: PipelineMetrics | None = None) -> AsyncIterator[Server]:
    """Serve `stream` for the duration of the block (the server runs on this event loop).

    `metrics`: the PipelineMetrics to expose (made, and attached to the stream, when None).
    Raises ServerError when the token variable is unset or the address cannot be bound.
    """
    config = config or ServerConfig()
    token = _token(config.token_env)
    if metrics is None:
        metrics = PipelineMetrics(stream)
    else:
        metrics.attach(stream)
    server = Server(stream, config, metrics, token)
    runner = web.AppRunner(server.app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.host, config.port)
        try:
            await site.start()
        except OSError as exc:
            raise ServerError(f"[server] cannot listen on {server.url}: {exc.strerror or exc}") from exc
        server.port = runner.addresses[0][1]
        _log_start(server, token is not None)
        yield server
    finally:
        await runner.cleanup()


def _token(variable: str | None) -> str | None:
    if variable is None:
        return None
    value = os.environ.get(variable, "").strip()
    if not value:
        raise ServerError(f"[server] token_env names ${variable}, which is not set (or empty): set it, or remove token_env")
    return value


def _log_start(server: Server, has_token: bool) -> None:
    log.info("serving metrics, health and the admin API on %s (%s)", server.url,
             "bearer token required" if has_token else "no token")


async def _json_object(request: web.Request) -> dict[str, Any]:
    body = _decoded(await request.read())
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text=f"the body must be a JSON object (one source table), not {_json_kind(body)}")
    return body


def _decoded(raw: bytes) -> Any:
    """The JSON value of a body at most MAX_JSON_DEPTH arrays and objects deep (400 otherwise)."""
    too_deep = web.HTTPBadRequest(text=f"the body nests arrays and objects more than {MAX_JSON_DEPTH} deep")
    try:
        body = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise web.HTTPBadRequest(text=f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise too_deep from None
    if _nested_deeper_than(body, MAX_JSON_DEPTH):
        raise too_deep
    return body


def _nested_deeper_than(value: Any, limit: int) -> bool:
    """Whether arrays and objects nest more than `limit` deep in `value` (walked level by level, no recursion)."""
    level = [value] if isinstance(value, (dict, list)) else []  # the containers at depth 1, 2, ...
    for _ in range(limit):
        level = [child for item in level for child in (item.values() if isinstance(item, dict) else item)
                 if isinstance(child, (dict, list))]
        if not level:
            return False
    return bool(level)


def _json_kind(value: Any) -> str:
    kinds = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else kinds.get(type(value), type(value).__name__)


def _refused(exc: ConfigError, body: dict[str, Any], taken: set[str]) -> web.Response:
    """A source table the API will not add: 403 (policy), 409 (its id runs already) or 422 (invalid)."""
    if isinstance(exc, SourcePolicyError):
        return _error(403, exc.message, path=exc.path)
    requested = body.get("id")
    duplicate = exc.path == "$.source.id" and isinstance(requested, str) and requested in taken
    return _error(409 if duplicate else 422, exc.message, path=exc.path)


def _error(status: int, message: str, headers: dict[str, str] | None = None, path: str | None = None) -> web.Response:
    body: dict[str, Any] = {"error": redact(message), "status": status}
    if path is not None:
        body["path"] = path  # the config key at fault, e.g. $.source.graph
    return web.json_response(body, status=status, headers=headers)


def _default_message(request: web.Request, exc: web.HTTPException) -> str:
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return f"{request.method} is not allowed on {request.path}; allowed: {', '.join(sorted(exc.allowed_methods))}"
    if isinstance(exc, web.HTTPNotFound):
        return f"no route {request.path}"
    return exc.reason
