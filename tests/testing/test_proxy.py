"""The fault proxy against a real echo server on loopback: each fault observably does what it says."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import socketserver
import sys
import threading
import time

import pytest

from streamer.testing import FaultProxy, LoopbackOnlyError
from streamer.testing.faults import Corruption
from tests.testing.echo import nothing_arrives, read_exactly, running_echo_server


@pytest.fixture
async def echo():
    async with running_echo_server() as server:
        yield server


@pytest.fixture
async def proxy(echo):
    async with FaultProxy(echo.port) as running:
        yield running


class EchoHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


async def connect(proxy: FaultProxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", proxy.port)


async def round_trip(proxy: FaultProxy, data: bytes) -> bytes:
    reader, writer = await connect(proxy)
    writer.write(data)
    echoed = await read_exactly(reader, len(data))
    writer.close()
    return echoed


async def test_proxy_when_clear_forwards_both_ways_and_counts_the_bytes(proxy, echo):
    assert await round_trip(proxy, b"hello" * 1000) == b"hello" * 1000

    assert (proxy.stats.connections, proxy.stats.bytes_to_server, proxy.stats.bytes_to_client) == (1, 5000, 5000)
    assert echo.received == b"hello" * 1000 and proxy.stats.bytes_corrupted == 0


async def test_proxy_when_stalled_silences_open_and_new_connections_until_cleared(proxy, echo):
    opened, opened_writer = await connect(proxy)
    opened_writer.write(b"before")
    assert await read_exactly(opened, 6) == b"before"

    proxy.stall()
    fresh, fresh_writer = await connect(proxy)  # the TCP handshake succeeds: the proxy accepted
    for writer in (opened_writer, fresh_writer):
        writer.write(b"during")
    assert await nothing_arrives(opened, 0.3) and await nothing_arrives(fresh, 0.1)
    assert echo.connections == 1 and proxy.open_connections == 2  # the fresh one is not even dialled upstream
    proxy.clear()
    assert [await read_exactly(reader, 6) for reader in (opened, fresh)] == [b"during", b"during"]
    for writer in (opened_writer, fresh_writer):
        writer.close()


async def test_proxy_when_frozen_holds_the_bytes_and_delivers_them_after_the_thaw(proxy):
    reader, writer = await connect(proxy)
    writer.write(b"warm")
    await read_exactly(reader, 4)

    started = time.monotonic()
    thawed = proxy.freeze(0.6)  # not awaited: the freeze goes on without us
    writer.write(b"x" * 100_000)
    assert await nothing_arrives(reader, 0.3)
    assert await read_exactly(reader, 100_000) == b"x" * 100_000
    assert time.monotonic() - started >= 0.55
    await asyncio.wait_for(thawed, 1.0)  # awaiting it waits for the thaw, which has come
    writer.close()


async def test_proxy_when_a_freeze_is_awaited_it_returns_at_the_thaw(proxy):
    started = time.monotonic()
    await proxy.freeze(0.3)

    assert 0.25 <= time.monotonic() - started < 1.0
    assert await round_trip(proxy, b"after") == b"after"


async def test_proxy_when_cut_resets_every_open_connection(proxy):
    connections = [await connect(proxy) for _ in range(3)]
    for reader, writer in connections:
        writer.write(b"up")
        await read_exactly(reader, 2)

    assert proxy.cut() == 3
    for reader, _ in connections:
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(1), 2.0)
    assert proxy.stats.cut == 3
    assert await round_trip(proxy, b"again") == b"again"  # without refuse_s, new connections work at once


async def test_proxy_when_cut_with_refuse_s_resets_new_connections_until_it_passes(proxy):
    proxy.cut(refuse_s=0.5)
    reader, writer = await connect(proxy)
    writer.write(b"anyone?")

    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(reader.read(1), 2.0)
    assert proxy.stats.refused == 1
    await asyncio.sleep(0.6)
    assert await round_trip(proxy, b"back") == b"back"


async def test_proxy_when_throttled_keeps_each_direction_to_the_rate(proxy):
    proxy.throttle(100_000)
    started = time.monotonic()
    await round_trip(proxy, b"t" * 50_000)  # 0.5 s each way at most; the two overlap
    throttled_s = time.monotonic() - started

    proxy.clear()
    started = time.monotonic()
    await round_trip(proxy, b"t" * 50_000)
    assert throttled_s >= 0.45 and time.monotonic() - started < 0.2


async def test_proxy_with_latency_delays_every_chunk_each_way(proxy):
    proxy.latency(0.2)
    started = time.monotonic()
    await round_trip(proxy, b"slow")
    assert time.monotonic() - started >= 0.4  # once to the server, once back

    proxy.clear()
    started = time.monotonic()
    await round_trip(proxy, b"fast")
    assert time.monotonic() - started < 0.15


async def test_proxy_when_corrupting_flips_the_fraction_asked_server_to_client_only(proxy, echo):
    proxy.corrupt(0.01, seed=7)
    data = bytes(200_000)

    echoed = await round_trip(proxy, data)

    flipped = sum(byte != 0 for byte in echoed)
    assert echo.received == data  # client -> server is untouched by default
    assert flipped == proxy.stats.bytes_corrupted and 1600 <= flipped <= 2400


async def test_proxy_when_corrupting_to_server_leaves_the_answers_alone(proxy, echo):
    proxy.corrupt(0.01, seed=7, direction="to_server")
    data = bytes(50_000)

    echoed = await round_trip(proxy, data)

    assert echoed == echo.received and echo.received != data


def test_corruption_when_seeded_alike_flips_the_same_bytes_whatever_the_chunking():
    data = bytes(10_000)
    whole, _ = Corruption(0.05, 3, "to_client").apply(data)
    pieces = Corruption(0.05, 3, "to_client")
    chunked = b"".join(pieces.apply(data[i : i + 777])[0] for i in range(0, len(data), 777))

    assert whole == chunked and whole != data


@pytest.mark.parametrize("fraction", [0, -0.1, 1.5])
def test_corruption_when_the_fraction_is_out_of_range_refuses(fraction):
    with pytest.raises(ValueError, match="fraction"):
        Corruption(fraction, 0, "to_client")


async def test_proxy_when_cleared_after_every_fault_is_a_clean_pipe(proxy):
    proxy.throttle(10)
    proxy.latency(5)
    proxy.corrupt(1.0)
    proxy.stall()
    proxy.clear()

    assert await round_trip(proxy, b"clean" * 100) == b"clean" * 100


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::", "example.com"])
def test_proxy_when_asked_to_listen_off_loopback_refuses(host):
    with pytest.raises(LoopbackOnlyError, match="loopback only"):
        FaultProxy(1, listen_host=host)


async def test_proxy_when_the_upstream_is_down_resets_the_client(echo):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    async with FaultProxy(closed_port) as proxy:
        reader, _ = await connect(proxy)
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(1), 2.0)
    assert proxy.stats.refused == 1


def test_proxy_running_in_thread_is_driven_from_sync_code():
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), EchoHandler) as echo:
        threading.Thread(target=echo.serve_forever, daemon=True).start()
        with FaultProxy.running_in_thread(echo.server_address[1]) as proxy:
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=0.3) as client:
                thawed = proxy.freeze(0.5)
                client.sendall(b"sync")
                with pytest.raises(TimeoutError):
                    client.recv(4)
                thawed.result(timeout=2)
                client.settimeout(2)
                assert client.recv(4) == b"sync"
            assert proxy.stats.bytes_to_client == 4
        echo.shutdown()


def test_proxy_module_imports_no_heavy_library():
    code = "import sys, streamer.testing; print(sorted({'aiohttp', 'av', 'onnxruntime', 'torch'} & set(sys.modules)))"
    imported = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout

    assert imported.strip() == "[]"
