"""A wake-up call for tasks waiting on a condition that other code changes (room in a queue, a new item).

An anyio.Event is set once; waiters of a condition that changes again and again need a fresh one after
each change. `Wakeup` keeps that swap in one place: waiters `await wakeup.wait()` and re-check their
condition, changers call `wakeup.notify()`, which wakes every current waiter.
"""

from __future__ import annotations

import anyio


class Wakeup:
    def __init__(self) -> None:
        self._event = anyio.Event()

    async def wait(self) -> None:
        """Until the next `notify()` (one already made before this call does not count)."""
        await self._event.wait()

    def notify(self) -> None:
        event, self._event = self._event, anyio.Event()
        event.set()
