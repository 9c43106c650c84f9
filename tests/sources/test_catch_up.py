"""Catching up with a camera decoded too slowly (streamer/sources/catch_up.py): a real RTSP camera
read more slowly than it sends is live again within a GOP or two, with no frame decoded against a
missing reference; a clock that only moved against the wall clock is no backlog."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import av
import pytest

from streamer.config.schema import RtspSourceConfig
from streamer.frames import Frame
from streamer.sources import AvSource
from streamer.sources.catch_up import BEHIND_LIVE_FLOOR_S, OVERDUE_S, CatchUp, behind_live_limit
from streamer.sources.state import SourceState, StateChange
from streamer.sources.stats import SourceStats
from streamer.sources.timeline import Timeline
from tests.rtsp import RtspServer
from tests.service.helpers import get_json, scrape, served, until, value
from tests.sources.test_decode_skip import write_clip, x264

SLOW_S, FAST_S = 3.0, 2.5  # reading at a third of the camera's rate, then as fast as it comes


def read_slowly_then_fast(server: RtspServer, policy: str, **config: object) -> tuple[list[float], AvSource]:
    """Each frame's lag behind the stream (seconds later than the first frame, by pts) while the
    reader takes 200 ms a frame of a 15 fps camera for SLOW_S (2 s behind by then, nothing
    skipped), then none; and the source."""
    source = AvSource(RtspSourceConfig(id="cam", url=server.url(), policy=policy, **config))  # type: ignore[arg-type]
    stop, lags = threading.Event(), []
    start = first_pts = None
    for item in source.frames(stop):
        if not isinstance(item, Frame):
            continue
        assert not item.decoded.is_corrupt
        now = time.time()
        if start is None:
            start, first_pts = now, item.pts
        lags.append(now - start - (item.pts - first_pts))
        if now - start > SLOW_S + FAST_S:
            break
        time.sleep(0.2 if now - start < SLOW_S else 0)
    stop.set()
    return lags, source


def test_catch_up_when_a_camera_is_read_too_slowly_skips_to_keyframes_and_stays_near_live(make_rtsp_server):
    lags, source = read_slowly_then_fast(make_rtsp_server(width=320, height=240, fps=15), "latest")

    assert source.stats.behind_live > 0 and source.stats.decode_errors == 0
    assert max(lags) < BEHIND_LIVE_FLOOR_S + 0.6  # what one GOP and the measure's own start can add
    assert lags[-1] < 0.5  # live again once the reader keeps up


def test_catch_up_when_the_latency_budget_is_long_lets_the_camera_run_up_to_half_of_it_behind(make_rtsp_server):
    lags, source = read_slowly_then_fast(make_rtsp_server(width=320, height=240, fps=15), "latest", latency_budget_ms=6000)

    assert source.stats.behind_live == 0  # 2 s behind is within 3 s
    assert max(lags) > BEHIND_LIVE_FLOOR_S + 0.6


def test_catch_up_when_the_policy_is_block_takes_every_frame_however_late(make_rtsp_server):
    lags, source = read_slowly_then_fast(make_rtsp_server(width=320, height=240, fps=15), "block")

    assert source.stats.behind_live == 0
    assert max(lags) > BEHIND_LIVE_FLOOR_S + 0.6  # it fell behind and nothing was skipped to catch up


def test_catch_up_when_the_keyframe_it_waits_for_never_comes_reconnects_at_one(make_rtsp_server):
    # An encoder that gives each connection one keyframe and no other: a reader behind live skips
    # towards a keyframe that never comes; once it is overdue the read timeout ends the connection,
    # and the next one starts at a keyframe, decoded with nothing missing.
    server = make_rtsp_server(width=160, height=120, fps=15, gop=100_000, own_playback=True)
    config = RtspSourceConfig(id="cam", url=server.url(), read_timeout_s=1.0, backoff_initial_s=0.1)
    source, stop = AvSource(config), threading.Event()
    give_up = threading.Timer(30, stop.set)  # a skip that waited for ever would yield nothing more
    give_up.start()
    states, after_reconnect = [], 0
    for item in source.frames(stop):
        if isinstance(item, StateChange):
            states.append(item.state)
        elif SourceState.RECONNECTING in states:
            assert not item.decoded.is_corrupt
            after_reconnect += 1
        else:
            time.sleep(0.2)  # a third of the camera's rate: it falls behind
        if after_reconnect == 5:
            break
    stop.set()
    give_up.cancel()

    assert source.stats.behind_live > 0 and after_reconnect == 5
    assert source.stats.reconnects == 1 and source.stats.decode_errors == 0


@pytest.mark.parametrize(("budget_ms", "limit_s"), [("auto", BEHIND_LIVE_FLOOR_S), (100, BEHIND_LIVE_FLOOR_S), (1000, 0.5), (3000, 1.5)])
def test_behind_live_limit_when_a_budget_is_given_is_half_of_it_never_under_the_floor(budget_ms, limit_s) -> None:
    assert behind_live_limit(budget_ms) == pytest.approx(limit_s)


# --- the measure, packet by packet (real packets, the real Timeline, the wall clock injected) ----

FPS, GOP = 30, 30  # write_clip's rate; an IDR each second


@pytest.fixture(scope="module")
def packets(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[av.Packet], object]:
    path = write_clip(tmp_path_factory.mktemp("catch_up") / "gop.mp4", "libx264", x264(GOP, 0))
    container = av.open(str(path))
    stream = container.streams.video[0]
    return [packet for packet in container.demux(stream) if packet.size], stream


def replay(packets: tuple[list[av.Packet], object], arrival: Callable[[float], float]) -> tuple[CatchUp, list[float], list[float]]:
    """Feed CatchUp the clip's packets as a reader would, each packet's frame decoded at
    `arrival(pts)`; (the CatchUp, the pts decoded, the capture times it gave them)."""
    items, stream = packets
    stats = SourceStats()
    timeline = Timeline("cam", stats, None, None)
    timeline.new_session(1 / FPS)
    catch_up = CatchUp(stream, timeline, stats)
    decoded, captured = [], []
    for packet in items:
        stream_time = float(packet.pts * packet.time_base)
        if catch_up.skip(packet):
            continue
        now = arrival(stream_time)
        catch_up.decoded(stream_time, now)
        pts = timeline.stamp(stream_time)
        decoded.append(pts)
        captured.append(catch_up.captured(pts, now))
    return catch_up, decoded, captured


def test_catch_up_when_frames_pile_up_skips_to_the_next_idr_and_keeps_the_clock(packets):
    # Live for 1 s, then 1.5 s behind, and the backlog reads at once: the rest of the second
    # GOP is skipped and the IDR at 2 s comes almost live.
    def arrival(pts: float) -> float:
        return pts if pts < 1.0 else pts + 1.5 if pts < 2.0 else pts + 0.1

    catch_up, decoded, captured = replay(packets, arrival)

    assert catch_up.stats.behind_live == GOP - 1  # the frames after the one found behind, up to the IDR
    assert not any(1.0 + 1e-6 < pts < 2.0 - 1e-6 for pts in decoded) and any(abs(pts - 2.0) < 1e-6 for pts in decoded)
    assert captured[-1] == pytest.approx(decoded[-1])  # the capture clock kept: stamped on the stream's time


def test_catch_up_when_the_clock_only_shifted_starts_the_measure_afresh(packets):
    # From 1 s on, every frame comes 1.5 s later than before and as fast as the stream goes: no
    # backlog, so the skip to the IDR wins nothing, and from there the new clock is the clock.
    catch_up, decoded, captured = replay(packets, lambda pts: pts if pts < 1.0 else pts + 1.5)

    assert catch_up.stats.behind_live == GOP - 1  # one skip, not one per GOP
    assert not catch_up.behind
    assert captured[-1] == pytest.approx(decoded[-1] + 1.5)


async def test_catch_up_in_a_pipeline_shows_its_count_in_the_summary_status_and_metrics(centerface, make_rtsp_server):
    server = make_rtsp_server(width=320, height=240, fps=15)
    source = {"type": "rtsp", "id": "cam", "url": server.url()}
    async with served(centerface, source) as (stream, _, http):
        await until(lambda: _processed(stream))
        time.sleep(2.5)  # the event loop blocked: the decoder cannot hand frames over and falls behind
        await until(lambda: _caught_up(stream))
        samples = await scrape(http)
        _, status = await get_json(http, "/status")
    report = stream.summary.sources["cam"]

    assert report.behind_live > 0 and report.decode_errors == 0
    assert value(samples, "streamer_source_frames_dropped_total", source="cam", reason="behind_live") == report.behind_live
    assert status["sources"][0]["behind_live"] == report.behind_live
    assert f"{report.behind_live} skipped behind live" in stream.summary.render()


async def _processed(stream) -> bool:
    return stream.summary.sources["cam"].frames > 0


async def _caught_up(stream) -> bool:
    report = stream.summary.sources["cam"]
    return report.behind_live > 0 and report.frames > 0


def test_catch_up_when_no_keyframe_follows_says_the_skip_is_overdue(tmp_path):
    # One IDR, then P-frames for ever (an encoder that stopped sending keyframes): the skip waits
    # for one, and past OVERDUE_S the source's read timeout may end the connection.
    path = write_clip(tmp_path / "one_idr.mp4", "libx264", x264(1000, 0))
    container = av.open(str(path))
    stream = container.streams.video[0]
    items = [packet for packet in container.demux(stream) if packet.size]

    catch_up, decoded, _ = replay((items, stream), lambda pts: pts if pts < 1.0 else pts + 1.5)
    late = av.Packet(bytes(items[-1]))
    # Overdue counted from where it fell behind (1 s): the one keyframe came before any frame had a time.
    late.pts, late.time_base = round((1.0 + OVERDUE_S + BEHIND_LIVE_FLOOR_S + 0.5) / items[-1].time_base), items[-1].time_base

    assert catch_up.behind and catch_up.stats.behind_live == len(items) - len(decoded)
    assert not any(catch_up.overdue(packet) for packet in items) and catch_up.overdue(late)
