"""The test RTSP server, proven with PyAV alone; also pins down what PyAV raises for each RTSP failure.

Those exceptions decide the RTSP source's reconnect logic:
    nothing listening     av.error.ConnectionRefusedError (a builtin ConnectionRefusedError), at once
    wrong/no credentials  av.error.HTTPUnauthorizedError "Server returned 401 Unauthorized ...", at once
    unknown path          av.error.HTTPNotFoundError "Server returned 404 Not Found", at once
    server killed         no error: the demuxer simply ends (EOF), within milliseconds; the last packet is
                          often cut short, and decoding it raises av.error.InvalidDataError
                          "Invalid data found when processing input: 'avcodec_send_packet()'"
    server stalled        av.error.ExitError "Immediate exit requested" after about TWO read timeouts
    open on a stalled one av.error.InvalidDataError (a ValueError) after the open timeout
Each message ends with the URL as given, password included.
"""

from __future__ import annotations

import itertools
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import av
import pytest
from av.container import InputContainer

from tests.rtsp import RtspServer, RtspServerError, free_port

FAST_OPEN = {"analyzeduration": "0", "probesize": "32"}  # FFmpeg's default probing adds ~2 s to every open
Factory = Callable[..., RtspServer]


def open_rtsp(url: str, transport: str = "tcp", timeout: tuple[float, float] = (5.0, 2.0)) -> InputContainer:
    return av.open(url, options={"rtsp_transport": transport, **FAST_OPEN}, timeout=timeout)


def read_frames(url: str, count: int = 5, transport: str = "tcp") -> list[av.VideoFrame]:
    with open_rtsp(url, transport) as container:
        return list(itertools.islice(container.decode(video=0), count))


def sizes(frames: list[av.VideoFrame]) -> set[tuple[int, int]]:
    return {(frame.width, frame.height) for frame in frames}


# --- streaming ------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_frames_arrive_at_the_configured_size(rtsp_server: RtspServer, transport: str) -> None:
    frames = read_frames(rtsp_server.url(), transport=transport)

    assert len(frames) == 5 and sizes(frames) == {(320, 240)}


def test_a_file_is_served_at_the_requested_size(make_rtsp_server: Factory, clip: Path) -> None:
    server = make_rtsp_server(source=clip, width=128, height=64)

    assert sizes(read_frames(server.url(), count=3)) == {(128, 64)}


def test_eight_cameras_stream_at_once(make_rtsp_server: Factory) -> None:
    paths = [f"/cam{i}" for i in range(8)]
    server = make_rtsp_server(paths=tuple(paths))

    with ThreadPoolExecutor(len(paths)) as pool:
        received = list(pool.map(lambda path: read_frames(server.url(path), count=10), paths))

    assert [len(frames) for frames in received] == [10] * 8


def read_frames_on_a_shared_mount(url: str, tries: int = 3) -> list[av.VideoFrame]:
    """`read_frames`, again after a moment when the server answers EPERM (a shared mount that the
    previous test's client just left is still being torn down, and GStreamer refuses it meanwhile)
    or the open finds nothing to probe (InvalidDataError: seen once in a few runs with three clients
    opening one mount together while both cores were busy; the next open succeeds)."""
    for attempt in range(1, tries + 1):
        try:
            return read_frames(url)
        except (av.error.PermissionError, av.error.InvalidDataError):
            if attempt == tries:
                raise
            time.sleep(0.3)
    raise AssertionError("unreachable")


def test_several_clients_share_one_mount(rtsp_server: RtspServer) -> None:
    with ThreadPoolExecutor(3) as pool:
        received = list(pool.map(lambda _: read_frames_on_a_shared_mount(rtsp_server.url()), range(3)))

    assert [len(frames) for frames in received] == [5] * 3


# --- refusals -------------------------------------------------------------------------------------


def test_no_server_refuses_at_once() -> None:
    started = time.monotonic()
    with pytest.raises(av.error.ConnectionRefusedError, match="Connection refused") as caught:
        open_rtsp(f"rtsp://127.0.0.1:{free_port()}/stream")

    assert isinstance(caught.value, ConnectionRefusedError) and caught.value.errno == 111
    assert time.monotonic() - started < 1


def test_right_credentials_open_the_stream(make_rtsp_server: Factory) -> None:
    server = make_rtsp_server(user="alice", password="s3cret")

    assert len(read_frames(server.url(user="alice", password="s3cret"))) == 5


@pytest.mark.parametrize("login", [("alice", "wrong"), ("mallory", "s3cret"), (None, None)])
def test_wrong_or_missing_credentials_fail_with_401(make_rtsp_server: Factory, login: tuple) -> None:
    server = make_rtsp_server(user="alice", password="s3cret")
    url = server.url(user=login[0], password=login[1])

    with pytest.raises(av.error.HTTPUnauthorizedError, match="401 Unauthorized") as caught:
        open_rtsp(url)

    assert str(caught.value).endswith(f"{url!r}")  # password and all: error translation must mask it


def test_an_unknown_path_fails_with_404(rtsp_server: RtspServer) -> None:
    with pytest.raises(av.error.HTTPNotFoundError, match="404 Not Found"):
        open_rtsp(rtsp_server.url("/nope"))


# --- crashes, restarts and stalls -----------------------------------------------------------------


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_a_killed_server_ends_the_stream_without_an_error(rtsp_server: RtspServer, transport: str) -> None:
    with open_rtsp(rtsp_server.url(), transport) as container:
        packets = container.demux(video=0)
        next(packets)
        rtsp_server.kill()
        started = time.monotonic()
        rest = list(packets)  # a plain EOF: a live source must read it as a disconnect, not as the end

    assert time.monotonic() - started < 1.5 and len(rest) <= 3


def test_a_restarted_server_serves_its_new_size_on_the_same_port(rtsp_server: RtspServer) -> None:
    port = rtsp_server.port
    with open_rtsp(rtsp_server.url()) as container:  # a client connected during the crash
        next(container.decode(video=0))
        rtsp_server.kill()

    rtsp_server.restart(width=640, height=480)

    assert rtsp_server.port == port
    assert sizes(read_frames(rtsp_server.url(), count=2)) == {(640, 480)}


def test_a_paused_server_times_reads_out_and_serves_new_clients_once_resumed(rtsp_server: RtspServer) -> None:
    with open_rtsp(rtsp_server.url(), timeout=(5.0, 1.0)) as container:
        packets = container.demux(video=0)
        next(packets)
        rtsp_server.pause()
        started = time.monotonic()
        with pytest.raises(av.error.ExitError, match="Immediate exit requested"):
            list(packets)
        waited = time.monotonic() - started
    rtsp_server.resume()

    assert 1.0 <= waited < 3.0  # two read timeouts: the first only flushes the parser's last packet
    assert sizes(read_frames(rtsp_server.url(), count=2)) == {(320, 240)}


def test_opening_a_paused_server_fails_after_the_open_timeout(rtsp_server: RtspServer) -> None:
    rtsp_server.pause()
    started = time.monotonic()

    with pytest.raises(av.error.InvalidDataError):  # not ExitError: FFmpeg reports the cut-off handshake so
        open_rtsp(rtsp_server.url(), timeout=(1.0, 1.0))

    assert 1.0 <= time.monotonic() - started < 2.0


# --- the helper itself ----------------------------------------------------------------------------


def test_a_server_that_cannot_listen_raises_with_its_stderr(make_rtsp_server: Factory) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(RtspServerError, match="cannot listen"):
            make_rtsp_server(port=taken.getsockname()[1])
