"""Plain-function entry points for code that is not async."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import anyio

from .config import Config
from .frames import Result
from .pipeline import Summary, open
from .sinks import CallbackSink


def run(
    config: str | Path | dict[str, Any] | Config, *, on_result: Callable[[Result], Any] | None = None
) -> Summary:
    """Run a pipeline to the end (blocking); `on_result` is called with every result, in order."""
    sinks = [CallbackSink(on_result)] if on_result is not None else []

    async def main() -> Summary:
        async with open(config, sinks=sinks) as stream:
            return await stream.wait()

    return anyio.run(main)
