"""The live page's routes on the server (service/server.py adds them; watch.py keeps what they show).

    GET  /                        200  the page (streamer/service/web/index.html)
    GET  /web/{name}              200  its script and style sheet (only the files in web/)
    GET  /sources/{id}/preview.jpg  200  the source's latest frame, drawn, as a small JPEG (watch.py:
                                       made only while someone asks, at most 5 a second per source)
                                  404  no such source; 503 it has produced no frame yet
    GET  /events                  200  text/event-stream: `history` (the last minutes' per-second
                                       samples) and the recent events first, then each `event` and
                                       each second's `sample` as they happen

The page's three files hold no data, so they need no token; every request the page makes goes
through the admin API's own rules (Host, Origin, JSON bodies, the token when one is set: the page
asks for it and sends it as `Authorization: Bearer`). The page may not be framed (clickjacking) and
loads nothing but its own files (Content-Security-Policy). The previews and the event stream are
refused to another site's page (`Sec-Fetch-Site`) and not embeddable elsewhere
(`Cross-Origin-Resource-Policy`).
"""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING, Callable

import anyio
from aiohttp import web

from .watch import Watch, history_message

if TYPE_CHECKING:
    from anyio.abc import ObjectReceiveStream

    from ..pipeline.runner import Stream

WEB_FILES = {"index.html": "text/html", "page.js": "text/javascript", "page.css": "text/css"}
PAGE_PATHS = frozenset({"/", *(f"/web/{name}" for name in WEB_FILES if name != "index.html")})
KEEPALIVE_S = 10.0  # a comment line this often, so a gone client is noticed and proxies keep the stream
WRITE_TIMEOUT_S = 5.0  # a message the page has not taken by then: it is hung up on
RETRY_MS = 2000  # how soon the page reconnects after the stream ends
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; connect-src 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-store",
}
FOREIGN_FETCHES = frozenset({"cross-site", "same-site"})  # Sec-Fetch-Site values from another site's page


class Page:
    """The page's handlers for one stream; `routes()` for the app, `close()` when the server stops."""

    def __init__(self, stream: Stream, known: Callable[[web.Request], str]) -> None:
        self.stream = stream
        self.watch = Watch(stream)
        self._known = known  # the source id of a request's {id}, or 404
        self._files = {name: _read(name) for name in WEB_FILES}

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/", self.get_page),
            web.get("/web/{name}", self.get_file),
            web.get("/sources/{id}/preview.jpg", self.get_preview),
            web.get("/events", self.get_events),
        ]

    def close(self) -> None:
        self.watch.close()

    def forget(self, source_id: str) -> None:
        self.watch.previews.forget(source_id)

    async def get_page(self, request: web.Request) -> web.Response:
        return self._file("index.html")

    async def get_file(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name == "index.html" or name not in self._files:
            raise web.HTTPNotFound(text=f"no page file {name!r}")
        return self._file(name)

    def _file(self, name: str) -> web.Response:
        return web.Response(body=self._files[name], content_type=WEB_FILES[name], charset="utf-8", headers=PAGE_HEADERS)

    async def get_preview(self, request: web.Request) -> web.Response:
        _own_page_only(request)
        source_id = self._known(request)
        data = await self.watch.previews.jpeg(source_id)
        if data is None:
            raise web.HTTPServiceUnavailable(text=f"source {source_id!r} has produced no frame yet")
        return web.Response(body=data, content_type="image/jpeg", headers=PAGE_HEADERS)

    async def get_events(self, request: web.Request) -> web.StreamResponse:
        _own_page_only(request)
        response = web.StreamResponse(headers={**PAGE_HEADERS, "Content-Type": "text/event-stream"})
        await response.prepare(request)
        backlog = [b"retry: %d\n\n" % RETRY_MS, history_message(list(self.watch.history.samples)), *self.watch.feed.recent]
        with anyio.CancelScope() as dropped, self.watch.feed.listen(backlog, dropped.cancel) as messages:
            try:
                while (message := await _next_message(messages)) is not None:
                    with anyio.fail_after(WRITE_TIMEOUT_S):
                        await response.write(message)
            except TimeoutError:
                _hang_up(request)  # a page that stopped reading: its connection would hold a handler forever
            except ConnectionResetError:
                pass  # the page went away
        if dropped.cancelled_caught:
            _hang_up(request)  # it fell behind, or the server is stopping: a write may still be stuck on it
        return response


async def _next_message(messages: ObjectReceiveStream[bytes]) -> bytes | None:
    """The next message, a keep-alive comment after KEEPALIVE_S of nothing, None once the feed dropped us."""
    with anyio.move_on_after(KEEPALIVE_S):
        try:
            return await messages.receive()
        except anyio.EndOfStream:
            return None
    return b": keep-alive\n\n"


def _hang_up(request: web.Request) -> None:
    if request.transport is not None:
        request.transport.abort()


def _own_page_only(request: web.Request) -> None:
    if request.headers.get("Sec-Fetch-Site", "").lower() in FOREIGN_FETCHES:
        raise web.HTTPForbidden(text="previews and events are for this server's own page, not another site's")


def _read(name: str) -> bytes:
    return resources.files("streamer.service").joinpath("web", name).read_bytes()
