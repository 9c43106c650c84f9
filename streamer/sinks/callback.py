"""Callback sink: hand each result to a function (sync functions run in a worker thread)."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterable
from typing import Any, Callable

import anyio

from ..errors import SinkWriteError
from .base import Item, Kind, SinkBase

log = logging.getLogger(__name__)


class CallbackSink(SinkBase):
    """Call `function(result)` for each result, in order.

    A sync function runs in a worker thread so it cannot stall the event loop; an async one is
    awaited. An exception is logged with its traceback and raised as a SinkWriteError, which the
    pipeline counts as a failed write; the next result is still delivered.
    """

    def __init__(
        self,
        function: Callable[[Item], Any],
        *,
        sources: list[str] | None = None,
        queue_size: int = 64,
        kinds: Iterable[Kind] = ("frames",),
    ) -> None:
        super().__init__(sources, queue_size, kinds=kinds)
        self.function = function
        self.calls = 0
        self._is_async = inspect.iscoroutinefunction(function)

    def describe(self) -> str:
        return f"callback {getattr(self.function, '__qualname__', self.function)!r}"

    async def write(self, result: Item) -> None:
        self.calls += 1
        try:
            if self._is_async:
                await self.function(result)
            else:
                await anyio.to_thread.run_sync(self.function, result)
        except Exception as exc:
            where = f"{self.describe()} raised on {result.source_id} frame {result.frame_index}"
            log.exception("%s", where)
            raise SinkWriteError(f"{where}: {exc!r}") from exc
