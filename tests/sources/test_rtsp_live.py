"""Live RTSP cameras through the whole pipeline, against a real RTSP server (GStreamer).

Crash and restart, stall, wrong credentials, unknown path, resolution change, many cameras."""

from __future__ import annotations

import logging

import anyio

import streamer
from streamer.sources import SourceState

FAST_RETRY = {"backoff_initial_s": 0.2, "backoff_max_s": 0.5, "open_timeout_s": 3, "read_timeout_s": 1.5}


def rtsp(id: str, url: str, **extra) -> dict:
    return {"type": "rtsp", "id": id, "url": url, **FAST_RETRY, **extra}


async def next_result(stream, source_id: str, **condition):
    async for result in stream:
        if result.source_id == source_id and all(getattr(result.frame, k) == v for k, v in condition.items()):
            return result
    raise AssertionError(f"the stream ended before a result from {source_id}")


async def test_rtsp_when_the_server_crashes_and_returns_the_source_reconnects(centerface, rtsp_server):
    config = {"sources": [rtsp("cam", rtsp_server.url())]}

    async with streamer.open(config, model=centerface) as stream:
        with anyio.fail_after(20):
            before = await next_result(stream, "cam")
            rtsp_server.kill()
            await stream.wait_for_state("cam", SourceState.RECONNECTING)
            await anyio.to_thread.run_sync(rtsp_server.restart)
            restarted = anyio.current_time()
            after = await next_result(stream, "cam")
            back_after = anyio.current_time() - restarted
        stream.stop()

    assert after.frame.index > before.frame.index and after.frame.pts > before.frame.pts
    assert back_after < FAST_RETRY["backoff_max_s"] + FAST_RETRY["open_timeout_s"] + 2
    assert stream.summary.sources["cam"].reconnects >= 1


async def test_rtsp_when_the_server_stalls_the_watchdog_reconnects(centerface, rtsp_server):
    config = {"sources": [rtsp("cam", rtsp_server.url())]}

    async with streamer.open(config, model=centerface) as stream:
        with anyio.fail_after(20):
            await next_result(stream, "cam")
            rtsp_server.pause()
            await stream.wait_for_state("cam", SourceState.RECONNECTING)
            rtsp_server.resume()
            await stream.wait_for_state("cam", SourceState.RUNNING)
            await next_result(stream, "cam")
        stream.stop()

    reasons = [e.reason or "" for e in stream.sources.events if e.state is SourceState.RECONNECTING]
    assert reasons and any("reading failed" in r or "no frame" in r for r in reasons)


async def test_rtsp_when_credentials_are_wrong_fails_at_once_with_the_password_masked(
    centerface, make_rtsp_server, caplog
):
    caplog.set_level(logging.DEBUG)
    server = make_rtsp_server(user="admin", password="right-pass")
    config = {"sources": [rtsp("cam", server.url(user="admin", password="wrong-pass"))]}

    with anyio.fail_after(20):
        async with streamer.open(config, model=centerface) as stream:
            summary = await stream.wait()

    report = summary.sources["cam"]
    assert report.state == "failed" and report.reconnects == 0
    assert "admin:***@127.0.0.1" in report.error
    assert "wrong-pass" not in report.error and "wrong-pass" not in caplog.text


async def test_rtsp_with_the_right_credentials_runs(centerface, make_rtsp_server):
    server = make_rtsp_server(user="admin", password="right-pass")
    config = {"sources": [rtsp("cam", server.url(user="admin", password="right-pass"), max_frames=5)]}

    with anyio.fail_after(20):
        async with streamer.open(config, model=centerface) as stream:
            summary = await stream.wait()

    assert summary.sources["cam"].frames + summary.sources["cam"].dropped == 5


async def test_rtsp_when_the_path_does_not_exist_fails_naming_the_url(centerface, rtsp_server):
    url = rtsp_server.url(path="/no-such-stream")
    config = {"sources": [rtsp("cam", url)]}

    with anyio.fail_after(20):
        async with streamer.open(config, model=centerface) as stream:
            summary = await stream.wait()

    report = summary.sources["cam"]
    assert report.state == "failed" and "/no-such-stream" in report.error


async def test_rtsp_when_the_resolution_changes_after_a_reconnect_results_follow_it(centerface, rtsp_server):
    config = {"sources": [rtsp("cam", rtsp_server.url())]}

    async with streamer.open(config, model=centerface) as stream:
        with anyio.fail_after(25):
            small = await next_result(stream, "cam")
            rtsp_server.kill()
            await stream.wait_for_state("cam", SourceState.RECONNECTING)
            await anyio.to_thread.run_sync(lambda: rtsp_server.restart(width=640, height=480))
            large = await next_result(stream, "cam", width=640)
        stream.stop()

    assert (small.frame.width, small.frame.height) == (320, 240)
    assert (large.frame.width, large.frame.height) == (640, 480)
    assert large.to_dict()["width"] == 640


async def test_rtsp_eight_cameras_at_once_all_deliver(centerface, make_rtsp_server):
    server = make_rtsp_server(width=160, height=120, fps=10, paths=[f"/cam{i}" for i in range(8)])
    config = {"sources": [rtsp(f"cam{i}", server.url(path=f"/cam{i}"), max_frames=10) for i in range(8)],
              "batching": {"max_batch_size": 8, "max_wait_ms": 20}}

    with anyio.fail_after(40):
        async with streamer.open(config, model=centerface) as stream:
            summary = await stream.wait()

    for i in range(8):
        report = summary.sources[f"cam{i}"]
        assert report.error is None and report.frames > 0 and report.frames + report.dropped == 10


async def test_rtsp_over_udp_delivers_frames(centerface, rtsp_server):
    config = {"sources": [rtsp("cam", rtsp_server.url(), transport="udp", max_frames=5)]}

    with anyio.fail_after(20):
        async with streamer.open(config, model=centerface) as stream:
            summary = await stream.wait()

    assert summary.sources["cam"].error is None and summary.sources["cam"].frames > 0
