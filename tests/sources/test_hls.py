"""HLS over HTTP from a real aiohttp server on loopback, segments written by PyAV's HLS muxer."""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator

import anyio
import av
import pytest
from aiohttp import web

import streamer
from tests.media import pattern, write_ts_clip
from tests.sources.hls_live import running_live_hls


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


def write_playlist(path: Path, segment: str) -> Path:
    """A finished HLS playlist of one segment at `segment` (a URL or a path)."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:2", "#EXT-X-MEDIA-SEQUENCE:0",
             "#EXTINF:1.0,", segment, "#EXT-X-ENDLIST"]
    path.write_text("\n".join(lines) + "\n")
    return path


@asynccontextmanager
async def serving(folder: Path) -> AsyncIterator[str]:
    """`folder` over HTTP on loopback, as `<url>/live/<file>`; yields the `/live` URL."""
    app = web.Application()
    app.router.add_static("/live/", folder)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/live"
    finally:
        await runner.cleanup()


@pytest.fixture
async def hls_url(tmp_path):
    write_hls(tmp_path)
    async with serving(tmp_path) as url:
        yield f"{url}/index.m3u8"


async def test_hls_source_reads_every_frame_of_a_playlist_over_http(centerface, hls_url):
    config = {"sources": [{"type": "hls", "id": "tv", "url": hls_url, "policy": "block", "max_attempts": 1}]}

    with anyio.fail_after(30):
        async with streamer.open(config, model=centerface) as stream:
            results = [result async for result in stream]

    assert [r.frame_index for r in results] == list(range(45))
    assert results[0].frame.width == 160 and results[15].frame.pts == pytest.approx(1.0, abs=0.1)


async def test_hls_source_when_the_playlist_grows_slower_than_half_the_read_timeout_stays_connected(centerface):
    # A live playlist gains a 2 s segment every 2 s; FFmpeg waits for it inside one read. With each
    # read given half of read_timeout_s (1.5 s) every wait looked like the end of the stream.
    async with running_live_hls(segment_s=2.0) as hls:
        source = {"type": "hls", "id": "tv", "url": hls.url, "read_timeout_s": 3, "open_timeout_s": 3,
                  "backoff_initial_s": 0.1, "backoff_max_s": 0.2}
        with anyio.fail_after(30):
            async with streamer.open({"sources": [source]}, model=centerface) as stream:
                seen = [result.frame.pts async for result in _for_seconds(stream, 7)]

    report = stream.summary.sources["tv"]
    assert (report.reconnects, report.attempts) == (0, 1), report.last_error
    assert seen == sorted(seen) and seen[-1] - seen[0] >= 4.0  # two segments past the first


async def _for_seconds(stream, seconds: float):
    with anyio.move_on_after(seconds):
        async for result in stream:
            yield result


async def test_hls_when_the_playlist_lists_a_local_segment_reads_none_of_it(centerface, tmp_path):
    segment = write_ts_clip(tmp_path / "local.ts", frames=10)  # valid media, on this machine
    web_root = tmp_path / "web"
    web_root.mkdir()
    write_playlist(web_root / "index.m3u8", f"file://{segment}")
    async with serving(web_root) as url:
        refused, refused_frames = await _read_hls(centerface, f"{url}/index.m3u8")
        # The control: the same playlist with `file` let through (as only the config file may) reads it.
        _, control_frames = await _read_hls(centerface, f"{url}/index.m3u8", protocol_whitelist="file,http,tcp")

    assert control_frames == 10
    assert refused_frames == 0 and refused.state == "failed"
    assert "cannot open it" in refused.error, refused.error


async def test_hls_when_the_playlist_lists_etc_passwd_reads_nothing_and_says_why(centerface, tmp_path):
    write_playlist(tmp_path / "index.m3u8", "file:///etc/passwd")
    async with serving(tmp_path) as url:
        report, frames = await _read_hls(centerface, f"{url}/index.m3u8")

    assert frames == 0 and report.state == "failed"
    assert "cannot open it" in report.error, report.error


async def _read_hls(model, url: str, **options: str):
    """(the source's report, how many frames it delivered) for one attempt at `url`."""
    config = {"sources": [{"type": "hls", "id": "tv", "url": url, "max_attempts": 1, "policy": "block",
                           "open_timeout_s": 5, "options": options}]}
    with anyio.fail_after(30):
        async with streamer.open(config, model=model) as stream:
            frames = len([result async for result in stream])
    return stream.summary.sources["tv"], frames
