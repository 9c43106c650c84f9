"""`streamer run`: one pipeline until its sources end or a signal says stop, with the daemon's extras.

- SIGTERM / SIGINT: stop reading; frames already read still reach the sinks, which get
  `[run] drain_timeout_s` to take them. A second signal gives up at once (exit 130).
- SIGHUP: re-read the config file and apply source changes (see reload.py).
- `[run] checkpoint`: resumable file jobs (see checkpoint.py).
- `[server]`: the HTTP server with metrics, health, status and the admin API (see server.py);
  with it the pipeline stays up when every source has ended (sources can be added at run time).
"""

from __future__ import annotations

import logging
import signal
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from pathlib import Path
from typing import Any, Callable

import anyio

from ..config import Config
from ..pipeline import Summary, open
from ..pipeline.runner import Stream
from . import checkpoint
from .reload import reload_sources

log = logging.getLogger("streamer")


class Interrupted(Exception):
    """A second stop signal came while the first was still draining."""


async def run_daemon(
    config: Config,
    config_path: str | Path | None = None,
    watch: Callable[[Stream], AbstractAsyncContextManager[Any]] | None = None,
) -> Summary:
    """Run `config` to its end or until a stop signal; returns the run's summary.

    `watch(stream)` is entered once the pipeline runs and left when it ends (the CLI's progress display)."""
    resume = checkpoint.load(config.run.checkpoint, config) if config.run.checkpoint else None
    options = {
        "results": False,
        "keep_alive": config.server is not None,
        "shutdown_timeout_s": config.run.drain_timeout_s,
        "resume": resume,
    }
    checkpointer = None
    async with open(config, **options) as stream:
        if config.run.checkpoint:
            checkpointer = checkpoint.Checkpointer(stream, config.run.checkpoint, config.run.checkpoint_interval_s, resume)
        async with AsyncExitStack() as extras:
            if config.server is not None:
                await extras.enter_async_context(_serve(stream, config))
            if watch is not None:
                await extras.enter_async_context(watch(stream))
            async with anyio.create_task_group() as group:
                group.start_soon(_handle_signals, stream, config_path)
                if checkpointer is not None:
                    group.start_soon(checkpointer.run)
                summary = await stream.wait()
                group.cancel_scope.cancel()
    if checkpointer is not None:
        checkpointer.save()  # the sinks are closed: everything they took is in their files
    return summary


def _serve(stream: Stream, config: Config):  # type: ignore[no-untyped-def]
    from .metrics import PipelineMetrics
    from .server import serve

    assert config.server is not None
    return serve(stream, config.server, PipelineMetrics(stream))


async def _handle_signals(stream: Stream, config_path: str | Path | None) -> None:
    signals = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP]
    with anyio.open_signal_receiver(*signals) as received:
        async for signum in received:
            if signum == signal.SIGHUP:
                if config_path is None:
                    log.warning("SIGHUP: this run has no config file to re-read")
                else:
                    log.info("SIGHUP: re-reading %s", config_path)
                    reload_sources(stream, config_path)
                continue
            if stream.stopping:
                raise Interrupted(signal.Signals(signum).name)
            log.warning("%s: stopping, draining to the sinks", signal.Signals(signum).name)
            stream.stop()
