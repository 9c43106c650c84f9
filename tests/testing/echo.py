"""A real TCP echo server on loopback for the fault proxy's tests: it sends back what it reads, and keeps it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field


@dataclass
class EchoServer:
    port: int = 0
    connections: int = 0
    received: bytearray = field(default_factory=bytearray)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while chunk := await reader.read(65536):
                self.received += chunk
                writer.write(chunk)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


@asynccontextmanager
async def running_echo_server() -> AsyncIterator[EchoServer]:
    echo = EchoServer()
    server = await asyncio.start_server(echo.handle, "127.0.0.1", 0)
    echo.port = server.sockets[0].getsockname()[1]
    async with server:
        yield echo


async def read_exactly(reader: asyncio.StreamReader, size: int, timeout_s: float = 5.0) -> bytes:
    return await asyncio.wait_for(reader.readexactly(size), timeout_s)


async def nothing_arrives(reader: asyncio.StreamReader, within_s: float) -> bool:
    """Whether no byte can be read within `within_s`."""
    try:
        await asyncio.wait_for(reader.read(1), within_s)
    except TimeoutError:
        return True
    return False
