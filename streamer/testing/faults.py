"""What a FaultProxy does to the bytes it forwards: the link's current faults, and the byte corrupter.

Standard library only. `LinkFaults` is the state one proxy shares between its connections; each
forwarding loop asks it, chunk by chunk, whether to wait (stall, freeze), how long (latency,
throttle) and what to flip (corruption).
"""

from __future__ import annotations

import asyncio
import math
import random
from dataclasses import dataclass
from typing import Literal

Direction = Literal["to_client", "to_server", "both"]
DIRECTIONS: tuple[Direction, ...] = ("to_client", "to_server", "both")
CHUNK_BYTES = 64 * 1024
THROTTLE_TICK_S = 0.05  # a throttled link forwards at most this many seconds' worth of bytes at once


@dataclass
class ProxyStats:
    """Counters of one proxy since it started."""

    connections: int = 0  # accepted and forwarded
    refused: int = 0  # accepted and reset at once (cut with refuse_s, or the upstream did not answer)
    cut: int = 0  # connections reset by cut()
    bytes_to_server: int = 0
    bytes_to_client: int = 0
    bytes_corrupted: int = 0


class Corruption:
    """Flip each byte with probability `fraction`, from a seeded generator: the same seed, the same flips."""

    def __init__(self, fraction: float, seed: int, direction: Direction) -> None:
        if not 0 < fraction <= 1:
            raise ValueError(f"corrupt: fraction must be in (0, 1], not {fraction}")
        if direction not in DIRECTIONS:
            raise ValueError(f"corrupt: direction must be one of {', '.join(DIRECTIONS)}, not {direction!r}")
        self.fraction, self.direction = fraction, direction
        self._random = random.Random(seed)
        self._next = self._gap()  # bytes to let pass before the next flip

    def applies_to(self, direction: Direction) -> bool:
        return self.direction in ("both", direction)

    def apply(self, chunk: bytes) -> tuple[bytes, int]:
        """The chunk with its flips, and how many bytes were flipped."""
        flipped = bytearray(chunk)
        position, count = self._next, 0
        while position < len(flipped):
            flipped[position] ^= self._random.randrange(1, 256)
            count += 1
            position += 1 + self._gap()
        self._next = position - len(flipped)
        return bytes(flipped), count

    def _gap(self) -> int:
        """Bytes before the next flip: geometric, so every byte is flipped independently."""
        if self.fraction >= 1:
            return 0
        return int(math.log(1.0 - self._random.random()) / math.log(1.0 - self.fraction))


class LinkFaults:
    """The faults in force on one proxy's link; every change takes effect at the next chunk."""

    def __init__(self) -> None:
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.refuse_until = 0.0  # loop time until which new connections are reset
        self.bytes_per_s: float | None = None
        self.delay_s = 0.0
        self.corruption: Corruption | None = None
        self._thaw: asyncio.TimerHandle | None = None
        self._thawed: asyncio.Future[None] | None = None

    def stop_flowing(self, seconds: float | None = None) -> asyncio.Future[None]:
        """Hold every byte; after `seconds` (None: until resume()) let them go on. Done when they flow again."""
        self._cancel_thaw()
        loop = asyncio.get_running_loop()
        self.flowing.clear()
        if self._thawed is None:  # a freeze during a freeze: both end together
            self._thawed = loop.create_future()
        if seconds is not None:
            self._thaw = loop.call_later(seconds, self.resume)
        return self._thawed

    def resume(self) -> None:
        self._cancel_thaw()
        self.flowing.set()
        if self._thawed is not None and not self._thawed.done():
            self._thawed.set_result(None)
        self._thawed = None

    def refusing(self) -> bool:
        return asyncio.get_running_loop().time() < self.refuse_until

    def chunk_size(self) -> int:
        if self.bytes_per_s is None:
            return CHUNK_BYTES
        return max(1, min(CHUNK_BYTES, int(self.bytes_per_s * THROTTLE_TICK_S)))

    def corrupted(self, chunk: bytes, direction: Direction) -> tuple[bytes, int]:
        if self.corruption is None or not self.corruption.applies_to(direction):
            return chunk, 0
        return self.corruption.apply(chunk)

    async def before_forwarding(self) -> None:
        """Wait while held, then for the latency, then (if a freeze began meanwhile) while held again."""
        await self.flowing.wait()
        if self.delay_s > 0:
            await asyncio.sleep(self.delay_s)
            await self.flowing.wait()

    async def after_forwarding(self, size: int) -> None:
        """Keep a throttled link to its rate."""
        if self.bytes_per_s is not None:
            await asyncio.sleep(size / self.bytes_per_s)

    def clear(self) -> None:
        self.refuse_until = 0.0
        self.bytes_per_s = None
        self.delay_s = 0.0
        self.corruption = None
        self.resume()

    def _cancel_thaw(self) -> None:
        if self._thaw is not None:
            self._thaw.cancel()
            self._thaw = None
