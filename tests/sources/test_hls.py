"""HLS over HTTP from a real aiohttp server on loopback, segments written by PyAV's HLS muxer."""

from __future__ import annotations

from pathlib import Path

import anyio
import av
import pytest
from aiohttp import web

import streamer
from tests.media import pattern


def write_hls(folder: Path, frames: int = 45, fps: int = 15) -> Path:
    playlist = folder / "index.m3u8"
    with av.open(str(playlist), "w", format="hls", options={"hls_time": "1", "hls_list_size": "0"}) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 160, 96, "yuv420p"
        stream.options = {"preset": "ultrafast", "g": str(fps)}
        for index in range(frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(pattern(index, 160, 96), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return playlist


@pytest.fixture
async def hls_url(tmp_path):
    write_hls(tmp_path)
    app = web.Application()
    app.router.add_static("/live/", tmp_path)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/live/index.m3u8"
    await runner.cleanup()


async def test_hls_source_reads_every_frame_of_a_playlist_over_http(centerface, hls_url):
    config = {"sources": [{"type": "hls", "id": "tv", "url": hls_url, "policy": "block", "max_attempts": 1}]}

    with anyio.fail_after(30):
        async with streamer.open(config, model=centerface) as stream:
            results = [result async for result in stream]

    assert [r.frame_index for r in results] == list(range(45))
    assert results[0].frame.width == 160 and results[15].frame.pts == pytest.approx(1.0, abs=0.1)
