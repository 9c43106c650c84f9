"""Real RTSP servers (GStreamer, run under the system Python; skipped where GStreamer is missing),
and a TCP server that accepts connections and never says a word."""

from __future__ import annotations

import socket
import threading
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


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port whose server accepts every connection, holds it open and sends nothing."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)  # so that the thread sees `done` soon
    held: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        while not done.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    done.set()
    thread.join(5)
    for connection in [*held, listener]:
        connection.close()

