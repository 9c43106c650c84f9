"""The HTTP server beside a real stream: metrics that move, health, status, and the admin API."""

from __future__ import annotations

import logging
import socket

import aiohttp
import pytest

import streamer
from streamer.config.schema import ServerConfig
from streamer.errors import ServerError
from streamer.service.server import MAX_BODY_BYTES, serve
from streamer.sources import SourceState
from tests.media import concatenate, cut, write_clip, write_ts_clip
from tests.service.helpers import get_json, lavfi, scrape, served, until, value
from tests.sources.test_av_source import closed_port


def camera_down(id: str, password: str = "hunter2") -> dict:
    """An RTSP camera nobody serves: it keeps reconnecting, its password must never show."""
    return {"type": "rtsp", "id": id, "url": f"rtsp://viewer:{password}@127.0.0.1:{closed_port()}/live?token=abc",
            "open_timeout_s": 1, "backoff_initial_s": 0.1, "backoff_max_s": 0.2}


async def test_metrics_move_as_frames_flow(centerface, tmp_path):
    stages = [{"type": "filter", "min_confidence": 0.5}]
    sinks = [{"type": "jsonl", "path": str(tmp_path / "out.jsonl")}]
    async with served(centerface, lavfi("cam1"), stages=stages, sinks=sinks) as (stream, server, http):
        async with http.get("/metrics") as response:
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        first = await until(lambda: _with_frames(http, "cam1", 3))
        second = await until(lambda: _with_frames(http, "cam1", value(first, "streamer_source_frames_processed_total", source="cam1") + 3))

    sink = f"jsonl {tmp_path / 'out.jsonl'}"
    for name, labels in [
        ("streamer_source_frames_read_total", {"source": "cam1"}),
        ("streamer_frames_total", {}),
        ("streamer_batches_total", {}),
        ("streamer_batch_size_frames_count", {}),
        ("streamer_batch_inference_seconds_count", {}),
        ("streamer_stage_latency_seconds_count", {"stage": "0:FilterStage"}),
        ("streamer_sink_written_total", {"sink": sink}),
    ]:
        assert value(second, name, **labels) > value(first, name, **labels) > 0, name
    assert value(second, "streamer_source_frames_per_second", source="cam1") > 0
    assert value(second, "streamer_source_state", source="cam1", state="running") == 1
    assert value(second, "streamer_source_state", source="cam1", state="paused") == 0
    assert value(second, "streamer_ready") == 1
    assert value(second, "streamer_stages_queue_depth_batches") >= 0  # exposed (a backlog comes and goes)
    assert value(second, "streamer_sink_dropped_total", sink=sink, reason="queue_full") == 0
    assert value(second, "streamer_model_info", model_id="centerface", architecture="centerface", task="face-detection",
                 package=centerface.info.package, backend=centerface.info.backend) == 1


async def test_sources_added_through_the_api_run_show_and_go(centerface):
    async with served(centerface, lavfi("cam1")) as (stream, server, http):
        async with http.post("/sources", json=lavfi("cam2")) as response:
            assert response.status == 201
            assert (await response.json())["id"] == "cam2"
            assert response.headers["Location"] == "/sources/cam2"

        status = await until(lambda: _status_of(http, "cam2", lambda s: s["state"] == "running" and s["frames"] > 0))
        assert status["type"] == "lavfi" and status["graph"] == lavfi("cam2")["graph"]
        samples = await scrape(http)
        assert value(samples, "streamer_source_frames_processed_total", source="cam2") > 0
        _, listed = await get_json(http, "/sources")
        assert [source["id"] for source in listed["sources"]] == ["cam1", "cam2"]

        async with http.delete("/sources/cam2") as response:
            assert response.status == 204
        _, listed = await get_json(http, "/sources")
        assert [source["id"] for source in listed["sources"]] == ["cam1"]
        async with http.delete("/sources/cam2") as response:
            assert response.status == 404
            assert "cam2" in (await response.json())["error"]
        assert "cam2" not in stream.sources.readers

        async with http.post("/sources", json=lavfi("cam2")) as response:  # a removed id may come back
            assert response.status == 201
        await until(lambda: _status_of(http, "cam2", lambda s: s["state"] == "running" and s["frames"] > 0))


async def test_a_paused_source_stops_counting_and_resumes(centerface):
    processed = "streamer_source_frames_processed_total"
    async with served(centerface, lavfi("cam1")) as (stream, server, http):
        await until(lambda: _with_frames(http, "cam1", 2))
        async with http.post("/sources/cam1/pause") as response:
            assert response.status == 200
            assert await response.json() == {"id": "cam1", "state": "paused"}

        settled = await until(lambda: _settled(http, "cam1"))  # what was read before the pause went through
        discarded = value(settled, "streamer_source_frames_dropped_total", source="cam1", reason="paused")
        later = await until(lambda: _paused_frames_past(http, "cam1", discarded + 4))  # the camera kept sending
        assert value(later, processed, source="cam1") == value(settled, processed, source="cam1")
        assert value(later, "streamer_source_state", source="cam1", state="paused") == 1
        assert value(later, "streamer_source_frames_per_second", source="cam1") == 0
        _, ready = await get_json(http, "/readyz")
        assert ready["ready"] is False and "cam1: paused" in ready["reason"]

        async with http.post("/sources/cam1/resume") as response:
            assert response.status == 200
            assert (await response.json())["state"] == "running"
        await until(lambda: _with_frames(http, "cam1", value(later, processed, source="cam1") + 2))
        async with http.post("/sources/nope/pause") as response:
            assert response.status == 404


async def test_bad_requests_get_clear_4xx_answers(centerface):
    async with served(centerface, lavfi("cam1")) as (stream, server, http):
        for body, status, words in [
            (b"{not json", 400, "not valid JSON"),
            (b"[1, 2]", 400, "JSON object"),
            (b'{"type": "lavfi", "id": "x", "graph": "testsrc2", "colour": "red"}', 422, "'colour'"),
            (b'{"type": "lavfi", "id": "x", "graph": 3}', 422, "$.source.graph"),
            (b'{"type": "lavfi", "id": "x"}', 422, "'graph'"),
            (b'{"type": "floppy", "id": "x"}', 422, "floppy"),
            (b'{"type": "lavfi", "id": "cam1", "graph": "testsrc2"}', 409, "'cam1'"),
        ]:
            async with http.post("/sources", data=body, headers={"Content-Type": "application/json"}) as response:
                answer = await response.json()
                assert (response.status, answer["status"]) == (status, status), (body, answer)
                assert words in answer["error"], (body, answer)
        async with http.get("/nowhere") as response:
            assert response.status == 404
            assert (await response.json())["error"] == "no route /nowhere"
        async with http.put("/sources") as response:
            assert response.status == 405
            assert "POST" in response.headers["Allow"] and "PUT" in (await response.json())["error"]
        async with http.delete("/metrics") as response:
            assert response.status == 405
        assert list(stream.sources.readers) == ["cam1"]  # nothing half-added


async def test_status_when_a_callback_sink_raises_counts_failed_writes_and_shows_the_last_error(centerface):
    sinks = [{"type": "callback", "function": "tests.service.test_server:refuse_odd_frames"}]
    async with served(centerface, lavfi("cam1"), sinks=sinks) as (stream, server, http):
        sink = await until(lambda: _sink_status(http, "callback", lambda s: s["failed"] >= 2 and s["written"] >= 2))
        samples = await scrape(http)

    assert "ValueError('odd frame " in sink["last_error"] and "cam1 frame" in sink["last_error"]
    assert value(samples, "streamer_sink_failed_total", sink=sink["name"]) >= 2


def refuse_odd_frames(result) -> None:
    if result.frame_index % 2:
        raise ValueError(f"odd frame {result.frame_index}")


async def test_status_never_shows_a_password(centerface):
    async with served(centerface, lavfi("cam1")) as (stream, server, http):
        async with http.post("/sources", json=camera_down("door")) as response:
            assert response.status == 201

        door = await until(lambda: _status_of(http, "door", lambda s: s["reconnects"] > 0 and s["last_error"]))
        assert door["type"] == "rtsp" and door["state"] in ("connecting", "reconnecting")
        assert door["url"].startswith("rtsp://***@127.0.0.1:") and door["url"].endswith("/live?token=***")
        for path in ("/status", "/sources", "/metrics"):
            async with http.get(path) as response:
                text = await response.text()
                assert "hunter2" not in text and "token=abc" not in text, path
        samples = await scrape(http)
        assert value(samples, "streamer_source_reconnects_total", source="door") > 0
        assert value(samples, "streamer_source_state", source="door", state="running") == 0


async def test_status_and_metrics_count_outages_apart_from_attempts_and_show_damaged_files(centerface, tmp_path):
    damaged = cut(write_clip(tmp_path / "cut.mp4", frames=90, faststart=True))
    segment = write_ts_clip(tmp_path / "segment.ts", frames=10)
    both = concatenate(tmp_path / "both.ts", segment, segment)
    files = [{"type": "file", "id": "cut", "path": str(damaged)}, {"type": "file", "id": "ts", "path": str(both)}]
    async with served(centerface, camera_down("door"), *files) as (stream, server, http):
        door = await until(lambda: _status_of(http, "door", lambda s: s["attempts"] >= 3))
        cut_file = await until(lambda: _status_of(http, "cut", lambda s: s["state"] == "ended"))
        ts_file = await until(lambda: _status_of(http, "ts", lambda s: s["state"] == "ended"))
        samples = await scrape(http)

    assert door["reconnects"] == 1 and door["damage"] is None  # one outage, however many attempts
    assert "of the 90 frames it declares" in cut_file["damage"] and cut_file["tolerate_damage"] is False
    assert ts_file["discontinuities"] == 1 and ts_file["decode_errors"] == 0 and ts_file["damage"] is None
    assert value(samples, "streamer_source_reconnects_total", source="door") == 1
    assert value(samples, "streamer_source_connect_attempts_total", source="door") >= 3
    assert value(samples, "streamer_source_damaged", source="cut") == 1
    assert value(samples, "streamer_source_damaged", source="ts") == 0
    assert value(samples, "streamer_source_discontinuities_total", source="ts") == 1
    assert value(samples, "streamer_source_decode_errors_total", source="ts") == 0


async def test_readyz_waits_for_a_running_source_while_healthz_answers_at_once(centerface):
    async with served(centerface, camera_down("door")) as (stream, server, http):
        status, answer = await get_json(http, "/readyz")
        assert status == 503 and answer["ready"] is False and "door" in answer["reason"]
        assert await get_json(http, "/healthz") == (200, {"status": "ok"})
        assert value(await scrape(http), "streamer_ready") == 0

        async with http.post("/sources", json=lavfi("cam1")) as response:
            assert response.status == 201
        await until(lambda: _status_is(http, "/readyz", 200))
        assert value(await scrape(http), "streamer_ready") == 1


async def test_a_token_guards_every_route_but_the_health_checks(centerface, monkeypatch, caplog):
    monkeypatch.setenv("STREAMER_TEST_TOKEN", "s3cret-token")
    caplog.set_level(logging.DEBUG)
    async with served(centerface, lavfi("cam1"), server={"token_env": "STREAMER_TEST_TOKEN"}) as (stream, server, http):
        good = {"Authorization": "Bearer s3cret-token"}
        for path, headers in [("/metrics", {}), ("/status", {"Authorization": "Bearer wrong"}),
                              ("/sources", {"Authorization": "s3cret-token"}), ("/nowhere", {})]:
            async with http.get(path, headers=headers) as response:
                assert response.status == 401, path
                assert response.headers["WWW-Authenticate"].startswith("Bearer")
                assert "s3cret" not in await response.text()
        async with http.post("/sources", json=lavfi("cam2")) as response:
            assert response.status == 401
        assert "cam2" not in stream.sources.readers
        await until(lambda: _status_is(http, "/readyz", 200))
        assert (await get_json(http, "/healthz"))[0] == 200
        for path in ("/metrics", "/status", "/sources"):
            async with http.get(path, headers=good) as response:
                assert response.status == 200, path
                assert "s3cret" not in await response.text()
        async with http.post("/sources", json=lavfi("cam2"), headers=good) as response:
            assert response.status == 201
    assert "s3cret" not in caplog.text


async def test_a_missing_token_variable_stops_the_server_from_starting(centerface, monkeypatch):
    monkeypatch.delenv("STREAMER_ABSENT_TOKEN", raising=False)
    async with streamer.open({"sources": [lavfi("cam1")]}, model=centerface, keep_alive=True, results=False) as stream:
        with pytest.raises(ServerError, match=r"\$STREAMER_ABSENT_TOKEN, which is not set"):
            async with serve(stream, ServerConfig(port=0, token_env="STREAMER_ABSENT_TOKEN")):
                pass
        monkeypatch.setenv("STREAMER_ABSENT_TOKEN", "  ")
        with pytest.raises(ServerError, match="STREAMER_ABSENT_TOKEN"):
            async with serve(stream, ServerConfig(port=0, token_env="STREAMER_ABSENT_TOKEN")):
                pass


async def test_the_server_listens_on_loopback_by_default_and_says_when_a_port_is_taken(centerface):
    async with streamer.open({"sources": [lavfi("cam1")]}, model=centerface, keep_alive=True, results=False) as stream:
        async with serve(stream, ServerConfig(port=0)) as server:
            assert server.host == "127.0.0.1" and server.port > 0
            async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{server.port}/healthz") as response:
                assert response.status == 200
            with socket.socket() as taken:
                taken.bind(("127.0.0.1", 0))
                taken.listen()
                with pytest.raises(ServerError, match="cannot listen on http://127.0.0.1:"):
                    async with serve(stream, ServerConfig(port=taken.getsockname()[1])):
                        pass


async def test_server_when_a_page_on_another_site_sends_a_request_refuses_it(centerface):
    cross_site = {"Origin": "http://evil.example"}
    body = b'{"type": "lavfi", "id": "x1", "graph": "testsrc2"}'
    async with served(centerface, lavfi("cam1")) as (stream, server, http):
        own = {"Origin": server.url.replace("127.0.0.1", "localhost"), "Host": f"localhost:{server.port}"}
        for method, path, headers, data, status in [
            ("POST", "/sources", {"Content-Type": "text/plain"}, body, 415),  # a fetch without preflight
            ("POST", "/sources", {"Content-Type": "application/x-www-form-urlencoded"}, body, 415),  # a form
            ("POST", "/sources/cam1/pause", {"Content-Type": "application/x-www-form-urlencoded"}, b"", 415),
            ("POST", "/sources", {**cross_site, "Content-Type": "application/json"}, body, 403),
            ("POST", "/sources/cam1/pause", cross_site, None, 403),
            ("POST", "/sources/cam1/pause", {"Origin": "null"}, None, 403),  # a sandboxed page
            ("DELETE", "/sources/cam1", cross_site, None, 403),
        ]:
            async with http.request(method, path, headers=headers, data=data) as response:
                answer = await response.json()
                assert (response.status, answer["status"]) == (status, status), (method, path, headers, answer)
        assert list(stream.sources.readers) == ["cam1"] and stream.source_state("cam1") is not SourceState.PAUSED

        async with http.post("/sources", data=body, headers={**own, "Content-Type": "application/json"}) as response:
            assert response.status == 201  # the server's own page may
        async with http.post("/sources/x1/pause", headers=own) as response:
            assert response.status == 200


async def test_server_when_the_host_header_is_not_its_own_answers_421_except_on_healthz(centerface):
    async with served(centerface, lavfi("cam1"), server={"allowed_hosts": ["streamer.example"]}) as (stream, server, http):
        port = server.port
        for host in ("evil.example", f"evil.example:{port}", f"localhost:{port + 1}", "localhost", "a:b", ""):
            for path in ("/status", "/metrics", "/sources", "/readyz", "/nowhere"):
                async with http.get(path, headers={"Host": host}) as response:
                    answer = await response.json()
                    assert (response.status, answer["status"]) == (421, 421), (host, path)
                    assert "allowed_hosts" in answer["error"]
            async with http.get("/healthz", headers={"Host": host}) as response:
                assert response.status == 200
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LocalHost:{port}", f"[::1]:{port}",
                     "streamer.example", "streamer.example:443"):
            async with http.get("/status", headers={"Host": host}) as response:
                assert response.status == 200, host


async def test_server_when_a_body_is_too_deep_or_too_big_answers_400_or_413(centerface):
    deep = b"[" * 30_000 + b"]" * 30_000  # past Python's recursion limit, under the size limit
    deeper_than_32 = b'{"type": "lavfi", "id": "x", "graph": "testsrc2", "options": ' + b"[" * 32 + b"]" * 32 + b"}"
    too_big = b'{"type": "lavfi", "id": "x", "graph": "' + b"t" * MAX_BODY_BYTES + b'"}'
    async with served(centerface, lavfi("cam1")) as (stream, server, http):
        for body, status, words in [(deep, 400, "more than 32 deep"), (deeper_than_32, 400, "more than 32 deep"),
                                    (too_big, 413, "65536"), (b"[" * 100_000 + b"]" * 100_000, 413, "65536")]:
            async with http.post("/sources", data=body, headers={"Content-Type": "application/json"}) as response:
                answer = await response.json()
                assert (response.status, answer["status"]) == (status, status), answer
                assert words in answer["error"], answer
        assert list(stream.sources.readers) == ["cam1"]


@pytest.mark.parametrize("bad_id", ["a\nb", "cam\n", "", "-cam", "cam 2", "caméra", "c" * 65, "../x"])
async def test_server_when_a_source_id_is_not_an_identifier_answers_422_naming_it(centerface, bad_id):
    async with served(centerface, lavfi("cam1")) as (stream, server, http):
        async with http.post("/sources", json=lavfi(bad_id)) as response:
            answer = await response.json()
            assert response.status == 422 and answer["path"] == "$.source.id", answer
            assert "letters, digits" in answer["error"] and "Location" not in response.headers
        assert list(stream.sources.readers) == ["cam1"]


async def test_server_when_a_handler_fails_answers_500_as_json_and_logs_the_traceback(centerface, monkeypatch, caplog):
    def broken(source_id: str) -> None:
        raise RuntimeError("a bug in pause")

    async with served(centerface, lavfi("cam1")) as (stream, server, http):
        monkeypatch.setattr(stream, "pause_source", broken)
        async with http.post("/sources/cam1/pause") as response:
            assert response.status == 500
            assert await response.json() == {"error": "the server failed on this request; its log has the traceback",
                                             "status": 500}
    assert "RuntimeError: a bug in pause" in caplog.text


# ---- polling helpers ------------------------------------------------------------------------------


async def _with_frames(http, source: str, at_least: float):
    samples = await scrape(http)
    found = value(samples, "streamer_source_frames_processed_total", source=source) or 0
    return samples if found >= at_least else None


async def _settled(http, source: str):
    """A scrape where every frame the source read was processed or dropped, and nothing waits."""
    samples = await scrape(http)
    read = value(samples, "streamer_source_frames_read_total", source=source)
    done = sum(value(samples, "streamer_source_frames_dropped_total", source=source, reason=reason)
               for reason in ("queue_full", "stale"))
    done += value(samples, "streamer_source_frames_processed_total", source=source)
    waiting = value(samples, "streamer_source_queue_depth_frames", source=source)
    return samples if done == read and waiting == 0 else None


async def _paused_frames_past(http, source: str, count: float):
    samples = await scrape(http)
    return samples if value(samples, "streamer_source_frames_dropped_total", source=source, reason="paused") >= count else None


async def _status_of(http, source: str, condition):
    _, status = await get_json(http, "/status")
    found = [entry for entry in status["sources"] if entry["id"] == source]
    return found[0] if found and condition(found[0]) else None


async def _status_is(http, path: str, expected: int) -> bool:
    async with http.get(path) as response:
        return response.status == expected


async def _sink_status(http, kind: str, condition):
    _, status = await get_json(http, "/status")
    found = [entry for entry in status["sinks"] if entry["name"].startswith(kind)]
    return found[0] if found and condition(found[0]) else None
