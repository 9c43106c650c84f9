"""A live HLS stream for the tests: an aiohttp server on loopback whose playlist never ends.

    async with running_live_hls() as hls:
        hls.url                         # http://127.0.0.1:<port>/live/index.m3u8

The playlist is a sliding window of the last `window` segments (`segment_s` long) since the server
started, with no #EXT-X-ENDLIST, so FFmpeg keeps reloading it as it would a camera's. Segment n
(MPEG-TS, H.264, opening on a keyframe) is encoded with PyAV on first request, its timestamps
following segment n - 1's, so time only moves forward; the last few are cached.

Segments are short (0.5 s) by default, so faults play out in seconds: FFmpeg waits up to a
segment's duration for the playlist to grow, within one read.
"""

from __future__ import annotations

import io
import math
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from fractions import Fraction

import av
from aiohttp import web

from tests.media import pattern

CACHED_SEGMENTS = 8


def encode_segment(number: int, frames: int, fps: int, width: int, height: int) -> bytes:
    """Frames number * frames .. of the test pattern as MPEG-TS, opening on a keyframe."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mpegts") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "g": str(frames)}
        for index in range(number * frames, (number + 1) * frames):
            frame = av.VideoFrame.from_ndarray(pattern(index, width, height), format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1, fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buffer.getvalue()


@dataclass
class LiveHls:
    fps: int = 10
    segment_s: float = 0.5
    width: int = 160
    height: int = 96
    window: int = 3
    port: int = 0
    started: float = field(default_factory=time.monotonic)
    _segments: OrderedDict[int, bytes] = field(default_factory=OrderedDict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/live/index.m3u8"

    def newest(self) -> int:
        """The number of the newest complete segment (the first one counts as complete at once)."""
        return int((time.monotonic() - self.started) / self.segment_s)

    def playlist(self) -> str:
        last = self.newest()
        first = max(0, last - self.window + 1)
        target = math.ceil(self.segment_s)
        lines = ["#EXTM3U", "#EXT-X-VERSION:3", f"#EXT-X-TARGETDURATION:{target}", f"#EXT-X-MEDIA-SEQUENCE:{first}"]
        for number in range(first, last + 1):
            lines += [f"#EXTINF:{self.segment_s:.3f},", f"segment{number}.ts"]
        return "\n".join(lines) + "\n"

    def segment(self, number: int) -> bytes:
        if number not in self._segments:
            frames = round(self.fps * self.segment_s)
            self._segments[number] = encode_segment(number, frames, self.fps, self.width, self.height)
            while len(self._segments) > CACHED_SEGMENTS:
                self._segments.popitem(last=False)
        return self._segments[number]

    async def serve_playlist(self, request: web.Request) -> web.Response:
        return web.Response(text=self.playlist(), content_type="application/vnd.apple.mpegurl")

    async def serve_segment(self, request: web.Request) -> web.Response:
        number = int(request.match_info["number"])
        if number > self.newest():
            raise web.HTTPNotFound()
        return web.Response(body=self.segment(number), content_type="video/mp2t")


@asynccontextmanager
async def running_live_hls(**options: float) -> AsyncIterator[LiveHls]:
    hls = LiveHls(**options)
    app = web.Application()
    app.router.add_get("/live/index.m3u8", hls.serve_playlist)
    app.router.add_get(r"/live/segment{number:\d+}.ts", hls.serve_segment)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    hls.port = runner.addresses[0][1]
    hls.started = time.monotonic()
    try:
        yield hls
    finally:
        await runner.cleanup()
