"""Real RTSP servers (GStreamer, run under the system Python); skipped where GStreamer is missing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.rtsp import MISSING_REASON, RtspServer, gstreamer_available


@pytest.fixture
def make_rtsp_server() -> Iterator[Callable[..., RtspServer]]:
    """Start servers with RtspServer's keywords (paths, width, user, ...); all stopped at teardown."""
    if not gstreamer_available():
        pytest.skip(MISSING_REASON)
    servers: list[RtspServer] = []

    def make(**options: Any) -> RtspServer:
        server = RtspServer(**options)
        servers.append(server)
        return server.start()

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def rtsp_server(make_rtsp_server: Callable[..., RtspServer]) -> RtspServer:
    """A live 320 x 240, 15 fps test pattern at rtsp://127.0.0.1:<port>/stream."""
    return make_rtsp_server(width=320, height=240, fps=15)
