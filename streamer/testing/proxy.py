"""A TCP fault proxy: put it between streamer and any server, then break the link on command.

    async with FaultProxy(8554) as proxy:        # 127.0.0.1:<proxy.port> -> 127.0.0.1:8554
        proxy.stall()                  # every connection, old and new, goes silent both ways
        await proxy.freeze(2.0)        # silent for 2 s, then what was held flows on (or don't await)
        proxy.cut(refuse_s=1.0)        # reset every connection, and new ones for 1 s
        proxy.throttle(20_000)         # at most 20 kB/s each way, per connection
        proxy.latency(0.2)             # each chunk waits 0.2 s before it is forwarded
        proxy.corrupt(0.001, seed=1)   # flip 0.1% of the bytes the server sends
        proxy.clear()                  # a clean pipe again
        proxy.stats                    # connections, bytes each way, bytes corrupted

From sync code: `with FaultProxy.running_in_thread(8554) as proxy:` (same methods). From a shell:
`python -m streamer.testing.proxy --upstream 127.0.0.1:8554`, then type commands (see commands.py).
It listens on loopback only. asyncio and the standard library only.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import ipaddress
import socket
import struct
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from .faults import Corruption, Direction, LinkFaults, ProxyStats

LOOPBACK_NAMES = ("localhost",)
THREAD_START_TIMEOUT_S = 10.0


class LoopbackOnlyError(ValueError):
    """The fault proxy was asked to listen on an address other than loopback."""


def require_loopback(host: str) -> str:
    """`host` if it is a loopback address (127.0.0.0/8, ::1, localhost); else LoopbackOnlyError."""
    try:
        loopback = host in LOOPBACK_NAMES or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise LoopbackOnlyError(f"the fault proxy listens on loopback only (127.0.0.1, ::1), not on {host!r}")
    return host


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST, as a crashed peer or a dropped route does, not with a polite FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class _Link:
    """One client connection and its connection to the upstream server."""

    def __init__(self, client: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        self.client_reader, self.client_writer = client
        self.server_reader: asyncio.StreamReader | None = None
        self.server_writer: asyncio.StreamWriter | None = None

    def reset(self) -> None:
        for writer in (self.client_writer, self.server_writer):
            if writer is not None:
                reset(writer)


class FaultProxy:
    """Forward 127.0.0.1:<port> to upstream_host:upstream_port, with faults injected on command."""

    def __init__(
        self, upstream_port: int, upstream_host: str = "127.0.0.1", *, listen_host: str = "127.0.0.1", listen_port: int = 0
    ) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.listen = (require_loopback(listen_host), listen_port)
        self.stats = ProxyStats()
        self.faults = LinkFaults()
        self._links: set[_Link] = set()
        self._handlers: set[asyncio.Task[Any]] = set()
        self._server: asyncio.Server | None = None
        self._closing = False

    @property
    def port(self) -> int:
        assert self._server is not None, "the proxy is not running"
        return self._server.sockets[0].getsockname()[1]

    @property
    def open_connections(self) -> int:
        return len(self._links)

    async def __aenter__(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._handle, *self.listen, reuse_address=True)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._closing = True
        self._server.close()
        for link in list(self._links):
            link.reset()
        for handler in list(self._handlers):
            handler.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        self.faults.resume()  # anyone awaiting a freeze is released

    # ---- faults ------------------------------------------------------------------------------

    def stall(self) -> None:
        """Every connection, existing and new, forwards nothing either way until clear(); bytes are held."""
        self.faults.stop_flowing()

    def freeze(self, seconds: float) -> asyncio.Future[None]:
        """Forward nothing for `seconds`, then go on with what was held; await the result to wait for the thaw."""
        if seconds <= 0:
            raise ValueError(f"freeze: seconds must be positive, not {seconds}")
        return self.faults.stop_flowing(seconds)

    def cut(self, refuse_s: float = 0.0) -> int:
        """Reset every open connection (both sides); reset new ones too for `refuse_s`. Returns how many were cut."""
        if refuse_s < 0:
            raise ValueError(f"cut: refuse_s must not be negative, not {refuse_s}")
        self.faults.refuse_until = asyncio.get_running_loop().time() + refuse_s
        links = list(self._links)
        for link in links:
            link.reset()
        self.stats.cut += len(links)
        return len(links)

    def throttle(self, bytes_per_s: float) -> None:
        """At most `bytes_per_s` each way, per connection."""
        if bytes_per_s <= 0:
            raise ValueError(f"throttle: bytes_per_s must be positive, not {bytes_per_s}")
        self.faults.bytes_per_s = float(bytes_per_s)

    def latency(self, seconds: float) -> None:
        """Hold each chunk `seconds` before forwarding it (chunks of a direction go one after another)."""
        if seconds < 0:
            raise ValueError(f"latency: seconds must not be negative, not {seconds}")
        self.faults.delay_s = float(seconds)

    def corrupt(self, fraction: float, *, seed: int = 0, direction: Direction = "to_client") -> None:
        """Flip each forwarded byte with probability `fraction` (seeded), server -> client unless told."""
        self.faults.corruption = Corruption(fraction, seed, direction)

    def clear(self) -> None:
        """No fault any more: held bytes flow, new connections are taken, full speed, no flips."""
        self.faults.clear()

    # ---- forwarding --------------------------------------------------------------------------

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        link = _Link((client_reader, client_writer))
        self._links.add(link)
        try:
            await self._forward(link)
        except asyncio.CancelledError:
            if not self._closing:
                raise
            # the proxy is closing: end quietly (asyncio would log a connection callback's cancellation)
        finally:
            self._links.discard(link)
            self._handlers.discard(handler)
            link.reset()

    async def _forward(self, link: _Link) -> None:
        if self.faults.refusing():
            self.stats.refused += 1
            return
        await self.faults.flowing.wait()  # a stalled server accepts, and says nothing
        try:
            link.server_reader, link.server_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            self.stats.refused += 1
            return
        self.stats.connections += 1
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._pump(link.client_reader, link.server_writer, "to_server"))
                group.create_task(self._pump(link.server_reader, link.client_writer, "to_client"))
        except* OSError:  # a reset on either side: the handler resets the other
            pass

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, direction: Direction) -> None:
        """Forward one direction until its end of stream, then pass the end on (a half close)."""
        while chunk := await reader.read(self.faults.chunk_size()):
            await self.faults.before_forwarding()
            chunk, flipped = self.faults.corrupted(chunk, direction)
            self._count(direction, len(chunk), flipped)  # counted first: the peer may look as soon as it reads
            writer.write(chunk)
            await writer.drain()
            await self.faults.after_forwarding(len(chunk))
        if writer.can_write_eof() and not writer.is_closing():
            writer.write_eof()

    def _count(self, direction: Direction, size: int, flipped: int) -> None:
        if direction == "to_server":
            self.stats.bytes_to_server += size
        else:
            self.stats.bytes_to_client += size
        self.stats.bytes_corrupted += flipped

    # ---- from another thread -----------------------------------------------------------------

    @classmethod
    @contextmanager
    def running_in_thread(cls, upstream_port: int, upstream_host: str = "127.0.0.1", **options: Any) -> Iterator[ProxyThread]:
        """A proxy on its own event loop in a daemon thread, controlled from the caller's thread."""
        proxy = cls(upstream_port, upstream_host, **options)
        handle = ProxyThread(proxy)
        handle.start()
        try:
            yield handle
        finally:
            handle.stop()


class ProxyThread:
    """A FaultProxy running in a thread of its own; the same fault methods, callable from any thread."""

    def __init__(self, proxy: FaultProxy) -> None:
        self.proxy = proxy
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._stopping: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="fault-proxy", daemon=True)

    @property
    def port(self) -> int:
        return self.proxy.port

    @property
    def stats(self) -> ProxyStats:
        return self.proxy.stats

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(THREAD_START_TIMEOUT_S) or self._error is not None:
            raise RuntimeError(f"the fault proxy did not start: {self._error!r}") from self._error

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(THREAD_START_TIMEOUT_S)

    def stall(self) -> None:
        self._call(self.proxy.stall)

    def freeze(self, seconds: float) -> concurrent.futures.Future[None]:
        """Returns at once; `.result()` on what it returns waits for the thaw."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(self._freeze(seconds), self._loop)

    def cut(self, refuse_s: float = 0.0) -> int:
        return self._call(self.proxy.cut, refuse_s)

    def throttle(self, bytes_per_s: float) -> None:
        self._call(self.proxy.throttle, bytes_per_s)

    def latency(self, seconds: float) -> None:
        self._call(self.proxy.latency, seconds)

    def corrupt(self, fraction: float, *, seed: int = 0, direction: Direction = "to_client") -> None:
        self._call(lambda: self.proxy.corrupt(fraction, seed=seed, direction=direction))

    def clear(self) -> None:
        self._call(self.proxy.clear)

    async def _freeze(self, seconds: float) -> None:
        await self.proxy.freeze(seconds)

    def _call(self, function: Any, *args: Any) -> Any:
        """Run `function(*args)` on the proxy's loop and return (or raise) what it did."""
        assert self._loop is not None

        async def call() -> Any:
            return function(*args)

        return asyncio.run_coroutine_threadsafe(call(), self._loop).result(THREAD_START_TIMEOUT_S)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as error:  # reported to start(), which is waiting for it
            self._error = error
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        async with self.proxy:
            self._ready.set()
            await self._stopping.wait()


# ---- command line ------------------------------------------------------------------------------


def parse_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, not {text!r}")
    return host.strip("[]"), int(port)


def main(argv: list[str] | None = None) -> int:
    from .commands import run_console

    parser = argparse.ArgumentParser(
        prog="python -m streamer.testing.proxy", description="A TCP fault proxy on loopback; commands on stdin."
    )
    parser.add_argument("--upstream", type=parse_address, required=True, help="HOST:PORT of the real server")
    parser.add_argument("--listen", type=parse_address, default=("127.0.0.1", 0), help="loopback HOST:PORT (default: a free port)")
    arguments = parser.parse_args(argv)
    try:
        proxy = FaultProxy(arguments.upstream[1], arguments.upstream[0], listen_host=arguments.listen[0], listen_port=arguments.listen[1])
    except LoopbackOnlyError as error:
        parser.error(str(error))
    return asyncio.run(run_console(proxy, sys.stdin, sys.stdout))


if __name__ == "__main__":
    sys.exit(main())
