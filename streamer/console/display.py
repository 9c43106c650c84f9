"""`streamer run`'s live view on a terminal: download, a bar per file source, a table of the rest.

    with RunDisplay(Console(stderr=True), "centerface") as display:
        with download_progress(display.download):              # engine/download.py's hook
            anyio.run(run_daemon, config, path, display.watch)

Until the pipeline runs, a spinner says the model is loading (and a download shows its bytes and
speed). Then, every REFRESH_S, `watch` reads the stream's status body (service/status.py, the
same counts /status answers with: nothing is measured for the display) on the event loop, and
rich redraws in its own thread at the same pace, so the pipeline never waits for the terminal.
A file source (not looping) gets a bar against the frames its container declares (or its
duration x frame rate), with its fps and ETA; the other sources are rows of the status table.
Log lines are printed above the display, as they are, while it runs.
"""

from __future__ import annotations

import logging
import os
import sys
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, Iterator, Self, TextIO

import anyio
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.spinner import Spinner

from ..engine.download import download_progress
from ..service.status import StatusReport
from .tables import status_view

if TYPE_CHECKING:
    from ..config.schema import SourceConfig
    from ..pipeline.runner import Stream

REFRESH_S = 0.25  # a status body this often, and a redraw
FINAL_STATES = ("ended", "failed")


class RunDisplay:
    """A rich Live view on `console` for one run (enter it around the whole run, model load included)."""

    def __init__(self, console: Console, model_id: str) -> None:
        self.console = console
        self.model_id = model_id
        self.body: dict[str, Any] | None = None  # the latest status body, replaced whole (read by rich's thread)
        self.downloads = download_bars(console)
        self.files = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[fps]:>6.1f} fps  eta"), TimeRemainingColumn(elapsed_when_finished=True),
            TextColumn("{task.fields[state]}"), console=console,
        )
        self.bars: dict[str, TaskID] = {}  # file source id -> its bar
        self._live = Live(get_renderable=self.renderable, console=console, refresh_per_second=1 / REFRESH_S)
        self._log_streams: list[tuple[logging.StreamHandler[Any], Any]] = []

    def __enter__(self) -> Self:
        self._route_logs()
        self._live.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._live.stop()  # drawn a last time, and left on the screen
        for handler, stream in self._log_streams:
            handler.setStream(stream)

    def renderable(self) -> RenderableType:
        parts: list[RenderableType] = []
        if self.downloads.tasks:
            parts.append(self.downloads)
        if self.body is None:
            parts.append(Spinner("dots", f"loading model {self.model_id} ..."))
            return Group(*parts)
        if self.bars:
            parts.append(self.files)
        parts.append(status_view(self.body, without=self.bars))
        return Group(*parts)

    def _route_logs(self) -> None:
        """Log handlers writing to the terminal write above the display instead (the lines unchanged)."""
        lines = _ConsoleLines(self.console)
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream in (sys.stderr, sys.__stderr__):
                self._log_streams.append((handler, handler.setStream(lines)))

    # ---- model download (engine/download.py's DownloadProgress) -------------------------------

    def download(self, label: str, total: int | None) -> _Download:
        return _Download(self.downloads, label, total)

    # ---- the running pipeline -----------------------------------------------------------------

    @asynccontextmanager
    async def watch(self, stream: Stream) -> AsyncIterator[None]:
        """While the block runs: read the stream's status every REFRESH_S (and once more at the end)."""
        status = StatusReport(stream)
        async with anyio.create_task_group() as group:
            group.start_soon(self._follow, status)
            try:
                yield
            finally:
                group.cancel_scope.cancel()
                self._show(status, final=True)

    async def _follow(self, status: StatusReport) -> None:
        totals: dict[str, int | None] = {}
        async with anyio.create_task_group() as probes:
            while True:
                for source_id in list(status.stream.summary.sources):
                    config = status.config_of(source_id)
                    if source_id not in totals and _has_bar(config):
                        totals[source_id] = None
                        probes.start_soon(self._probe, source_id, config, totals)
                self._show(status, totals=totals)
                await anyio.sleep(REFRESH_S)

    async def _probe(self, source_id: str, config: Any, totals: dict[str, int | None]) -> None:
        totals[source_id] = await anyio.to_thread.run_sync(file_frames, config)

    def _show(self, status: StatusReport, *, totals: dict[str, int | None] | None = None, final: bool = False) -> None:
        body = status.body()
        for source in body["sources"]:
            if source["id"] in self.bars or (totals is not None and source["id"] in totals):
                self._advance(source, (totals or {}).get(source["id"]), final)
        self.body = body

    def _advance(self, source: dict[str, Any], total: int | None, final: bool) -> None:
        done = source["read"] + source["over_max_fps"]
        bar = self.bars.get(source["id"])
        if bar is None:
            bar = self.bars[source["id"]] = self.files.add_task(source["id"], total=total, fps=0.0, state="")
        if source["state"] == "ended" and not source.get("damage"):
            total = done  # what it declared may be off by a frame or two: it is done
        self.files.update(bar, completed=done, total=total, fps=source["fps"],
                          state=source["state"] if source["state"] != "running" else "")
        if final or source["state"] in FINAL_STATES:
            self.files.stop_task(bar)


def download_bars(console: Console) -> Progress:
    """A Progress showing each package's download: bytes, speed, time left."""
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                    TransferSpeedColumn(), TimeRemainingColumn(), console=console)


@contextmanager
def pull_progress(*, enabled: bool) -> Iterator[None]:
    """Around `streamer models pull`: its download as bars on stderr, or (not `enabled`) nothing at all."""
    if not enabled:
        with download_progress(None):
            yield
        return
    with download_bars(Console(stderr=True)) as bars, download_progress(lambda label, total: _Download(bars, label, total)):
        yield


class _Download:
    """One package's download as a task of the downloads Progress: bytes, speed, time left."""

    def __init__(self, progress: Progress, label: str, total: int | None) -> None:
        self.progress = progress
        self.task = progress.add_task(label, total=total)
        self.done: dict[str, int] = {}

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.progress.stop_task(self.task)

    def update(self, name: str, done: int) -> None:
        self.done[name] = done
        self.progress.update(self.task, completed=sum(self.done.values()))


class _ConsoleLines:
    """A text stream that prints each whole line through the console (above a live display)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._partial = ""

    def write(self, text: str) -> int:
        *lines, self._partial = (self._partial + text).split("\n")
        for line in lines:
            self.console.out(line, highlight=False)
        return len(text)

    def flush(self) -> None:
        pass


def _has_bar(config: SourceConfig | None) -> bool:
    return config is not None and type(config).__struct_config__.tag == "file" and not getattr(config, "loop", False)


def file_frames(config: Any) -> int | None:
    """The frames a file source will go through: what its container declares (or its duration x frame
    rate), at most its `max_frames`; None when the file says neither."""
    import av

    try:
        with av.open(config.path) as container:
            stream = container.streams.video[0]
            declared = stream.frames or _frames_from_duration(stream, container)
    except (av.FFmpegError, OSError, IndexError):
        return None
    if declared and config.max_frames is not None:
        return min(declared, config.max_frames)
    return declared or None


def _frames_from_duration(stream: Any, container: Any) -> int | None:
    rate = stream.average_rate or stream.guessed_rate
    if stream.duration and stream.time_base:
        seconds = float(stream.duration * stream.time_base)
    elif container.duration:
        seconds = container.duration / 1_000_000  # AV_TIME_BASE
    else:
        return None
    return round(seconds * float(rate)) if rate else None


@contextmanager
def run_progress(model_id: str, *, enabled: bool) -> Iterator[Callable[[Stream], Any] | None]:
    """Around `streamer run`: the display's `watch` for run_daemon (None when not `enabled`), and the
    model download reporting to it. Not enabled, nothing is drawn at all, the download's bar neither."""
    if not enabled:
        with download_progress(None):
            yield None
        return
    with RunDisplay(Console(stderr=True), model_id) as display, download_progress(display.download):
        yield display.watch


def shows_progress(stream: TextIO, *, quiet: bool = False, log_format: str = "text") -> bool:
    """Whether `streamer run` draws its display on `stream`: a terminal (not a dumb one), unless asked
    for quiet or JSON logs, whose every line must be JSON."""
    dumb = os.environ.get("TERM", "").lower() in ("dumb", "unknown")
    return stream.isatty() and not dumb and not quiet and log_format != "json"
