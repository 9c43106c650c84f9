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
    assert stream.summary.sources["cam"].reconnects == 1  # one outage


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


async def next_result_from_a_later_session(stream, source_id: str, session: int):
    """The first result of `source_id` read on a connection after `session` (not one queued before)."""
    async for result in stream:
        if result.source_id == source_id and result.frame.session > session:
            return result
    raise AssertionError(f"the stream ended before {source_id} delivered again")


async def until_event(stream, source_id: str, state: SourceState, says: str) -> None:
    """Wait for a state change of `source_id` to `state` whose reason contains `says`."""
    while not any(e.source_id == source_id and e.state is state and says in (e.reason or "") for e in stream.sources.events):
        await anyio.sleep(0.05)


async def test_rtsp_when_the_server_freezes_longer_than_every_timeout_the_camera_is_processed_again(
    centerface, rtsp_server
):
    quick = {"open_timeout_s": 1, "read_timeout_s": 1}
    config = {"sources": [rtsp("cam", rtsp_server.url(), **quick)]}

    async with streamer.open(config, model=centerface) as stream:
        with anyio.fail_after(30):
            before = await next_result(stream, "cam")
            rtsp_server.pause()  # SIGSTOP: connections stay open, nothing answers
            await until_event(stream, "cam", SourceState.RECONNECTING, "no frame within read_timeout_s=1")
            await until_event(stream, "cam", SourceState.RECONNECTING, "no answer within open_timeout_s=1")
            assert stream.source_state("cam") is not SourceState.FAILED
            rtsp_server.resume()
            after = await next_result_from_a_later_session(stream, "cam", before.frame.session)
        stream.stop()

    report = stream.summary.sources["cam"]
    assert after.frame.index > before.frame.index and report.error is None
    assert report.reconnects == 1 and report.attempts >= 3  # one outage, the first open and two retries at least


async def test_rtsp_reconnects_count_outages_and_attempts_count_each_try(centerface, rtsp_server):
    config = {"sources": [rtsp("cam", rtsp_server.url())]}

    async with streamer.open(config, model=centerface) as stream:
        with anyio.fail_after(40):
            session = -1
            for _ in range(2):
                session = (await next_result_from_a_later_session(stream, "cam", session)).frame.session
                tried = stream.summary.sources["cam"].attempts
                rtsp_server.kill()
                while stream.summary.sources["cam"].attempts < tried + 3:  # three tries while it is down
                    await anyio.sleep(0.05)
                await anyio.to_thread.run_sync(rtsp_server.restart)
            await next_result_from_a_later_session(stream, "cam", session)
        stream.stop()

    report = stream.summary.sources["cam"]
    assert report.reconnects == 2 and report.attempts >= 1 + 2 * 4


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
    assert "rtsp://***@127.0.0.1" in report.error and "credentials refused" in report.error
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
        assert report.discontinuities == 0  # a first keyframe without a time is no jump back


async def test_rtsp_over_udp_delivers_frames(centerface, rtsp_server):
    config = {"sources": [rtsp("cam", rtsp_server.url(), transport="udp", max_frames=5)]}

    with anyio.fail_after(20):
        async with streamer.open(config, model=centerface) as stream:
            summary = await stream.wait()

    assert summary.sources["cam"].error is None and summary.sources["cam"].frames > 0
