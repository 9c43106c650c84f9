"""Callback sink: hand each result to a function (sync functions run in a worker thread)."""

from __future__ import annotations

import inspect
import logging
from typing import Any, Callable

import anyio

from ..config import configured
from ..config.schema import CallbackSinkConfig
from ..errors import SinkWriteError
from .base import Item, Sink

log = logging.getLogger(__name__)


class CallbackSink(Sink):
    """Call `function(result)` for each result, in order.

    A sync function runs in a worker thread so it cannot stall the event loop; an async one is
    awaited. An exception is logged with its traceback and raised as a SinkWriteError, which the
    pipeline counts as a failed write; the next result is still delivered.
    """

    config: CallbackSinkConfig

    def __init__(
        self, function: Callable[[Item], Any], config: CallbackSinkConfig | None = None, /, **options: Any
    ) -> None:
        if config is None:  # built in Python: the config's `function` only names the callable
            options.setdefault("function", f"{getattr(function, '__module__', None)}:{callable_name(function)}")
        config = configured(CallbackSinkConfig, config, options)
        super().__init__(config, kinds=config.kinds)
        self.function = function
        self.calls = 0
        self._is_async = is_async_callable(function)

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


def callable_name(function: Callable[..., Any]) -> str:
    return getattr(function, "__qualname__", None) or repr(function)


def is_async_callable(function: Callable[..., Any]) -> bool:
    """An async function, or an object whose __call__ is one."""
    return inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(getattr(function, "__call__", None))
