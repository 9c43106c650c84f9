"""The live page's routes over HTTP (a real server on a real stream) and what watch.py keeps for them;
the page itself, in a browser, is tests/service/test_page.py."""

from __future__ import annotations

import re
import time

import anyio
import numpy as np
import pytest

from streamer.frames import Detections, Frame, Result
from streamer.service.watch import LISTENER_QUEUE, MIN_INTERVAL_S, WATCHED_S, Feed, Previews
from tests.service.helpers import lavfi, served, until


async def test_page_when_fetched_is_html_that_may_not_be_framed_and_its_files_are_served(centerface):
    async with served(centerface, lavfi("cam1")) as (_, _, http):
        async with http.get("/") as response:
            page = await response.text()
            assert response.status == 200 and response.content_type == "text/html"
            assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
            assert response.headers["X-Frame-Options"] == "DENY"
        scripts = re.findall(r'<script src="(/[^"]+\.js)"', page)
        assert scripts == ["/web/page.js"]
        async with http.get(scripts[0]) as response:
            assert response.status == 200 and response.content_type == "text/javascript"
            assert "/sources/${source}/preview.jpg" in await response.text()  # the address the page fetches
        async with http.get("/web/secrets.txt") as response:
            assert response.status == 404 and (await response.json())["status"] == 404


async def test_preview_when_asked_for_is_a_jpeg_drawn_at_most_five_times_a_second(centerface):
    async with served(centerface, lavfi("cam1"), lavfi("cam2")) as (_, server, http):
        previews = server.page.watch.previews
        await until(frames_flowed(server))
        assert previews.holding == set()  # nobody watches: no frame is kept

        started = time.monotonic()
        for _ in range(15):
            async with http.get("/sources/cam1/preview.jpg") as response:
                body = await response.read()
                assert response.status == 200 and response.content_type == "image/jpeg"
                assert body[:2] == b"\xff\xd8"
        elapsed = time.monotonic() - started

        assert 1 <= previews.encoded <= elapsed / MIN_INTERVAL_S + 1
        await until(holding(previews, {"cam1"}))  # from cam1's next frame on; cam2 is not watched
        async with http.get("/sources/nocam/preview.jpg") as response:
            assert response.status == 404


def holding(previews, sources):
    async def held() -> bool:
        assert "cam2" not in previews.holding
        return previews.holding == sources

    return held


def frames_flowed(server):
    async def flowed() -> bool:
        return server.stream.summary.frames > 2

    return flowed


async def test_preview_when_another_sites_page_asks_is_refused(centerface):
    async with served(centerface, lavfi("cam1")) as (_, _, http):
        for path in ("/sources/cam1/preview.jpg", "/events"):
            async with http.get(path, headers={"Sec-Fetch-Site": "cross-site"}) as response:
                assert response.status == 403, path


async def test_page_when_a_token_is_set_its_files_open_but_previews_and_events_need_it(centerface, monkeypatch):
    monkeypatch.setenv("STREAMER_PAGE_TOKEN", "tok-123")
    async with served(centerface, lavfi("cam1"), server={"token_env": "STREAMER_PAGE_TOKEN"}) as (_, _, http):
        for path in ("/", "/web/page.js", "/web/page.css"):
            async with http.get(path) as response:
                assert response.status == 200, path
        for path in ("/sources/cam1/preview.jpg", "/events"):
            async with http.get(path) as response:
                assert response.status == 401, path
        async with http.get("/sources/cam1/preview.jpg", headers={"Authorization": "Bearer tok-123"}) as response:
            assert response.status == 200 and response.content_type == "image/jpeg"


async def test_events_when_listening_start_with_history_then_a_sample_each_second(centerface):
    async with served(centerface, lavfi("cam1")) as (_, _, http):
        async with http.get("/events") as response:
            assert response.content_type == "text/event-stream"
            kinds = []
            with anyio.fail_after(10):
                while "sample" not in kinds:
                    line = (await response.content.readline()).decode()
                    if line.startswith("event:"):
                        kinds.append(line.split(":", 1)[1].strip())
                    elif line.startswith("data:") and kinds[-1] == "sample":
                        assert '"cam1":{"fps":' in line
    assert kinds[0] == "history"


async def test_events_when_the_server_stops_with_a_page_listening_end_at_once(centerface):
    async with served(centerface, lavfi("cam1")) as (_, server, http):
        response = await http.get("/events")
        await response.content.readline()
        assert server.page.watch.feed.listeners == 1
        started = time.monotonic()
    assert time.monotonic() - started < 5  # aiohttp would wait 60 s for a handler that never ends
    response.close()


def test_feed_when_a_listener_falls_behind_drops_it_and_never_waits():
    feed = Feed()
    slow, fast = feed.listen([]), feed.listen([])
    with slow, fast:
        for n in range(LISTENER_QUEUE + 1):
            feed.publish("event", {"n": n})
            if n < LISTENER_QUEUE:
                fast.receive_nowait()

        assert feed.listeners == 1 and feed.dropped == 1
        for _ in range(LISTENER_QUEUE):
            slow.receive_nowait()  # what it had queued it still gets, then its stream ends
        with pytest.raises(anyio.EndOfStream):
            slow.receive_nowait()
        assert b'"n":256' in fast.receive_nowait()
        assert len(feed.recent) == 100


async def test_previews_when_nobody_asked_for_a_while_let_the_frame_go(centerface):
    now = [0.0]
    previews = Previews(clock=lambda: now[0])
    result = Result(Frame("cam1", 0, 0.0, time.time(), image=np.full((90, 160, 3), 200, np.uint8)),
                    Detections.empty(), centerface.info)
    previews.offer(result)
    assert previews.holding == set()

    async with anyio.create_task_group() as group:
        group.start_soon(previews.jpeg, "cam1")  # waits for a first frame
        await anyio.sleep(0.05)
        previews.offer(result)
    assert previews.holding == {"cam1"} and previews.encoded == 1

    now[0] += WATCHED_S + 0.1
    previews.offer(result)
    assert previews.holding == set()
    assert (await previews.jpeg("cam1"))[:2] == b"\xff\xd8"  # the last JPEG is kept (a few kB)


async def test_events_when_a_page_stops_reading_it_is_dropped_and_the_server_still_stops_at_once(centerface):
    import socket

    async with served(centerface, lavfi("cam1")) as (_, server, _):
        feed = server.page.watch.feed
        stuck = socket.socket()
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.connect((server.host, server.port))
        stuck.sendall(f"GET /events HTTP/1.1\r\nHost: {server.host}:{server.port}\r\n\r\n".encode())
        await until(listening(feed))
        padding = "x" * 16384
        with anyio.fail_after(10):
            while feed.dropped == 0:
                feed.publish("event", {"padding": padding})  # never waits, however full the socket is
                await anyio.sleep(0)
        assert feed.listeners == 0
        started = time.monotonic()
    assert time.monotonic() - started < 3  # hung up on when dropped: no write left waiting on it
    stuck.close()


def listening(feed):
    async def check() -> bool:
        return feed.listeners == 1

    return check
