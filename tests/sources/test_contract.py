"""The promises every source keeps, one suite for every kind (as trio's check_one_way_stream is for
streams): a new source type is done when it passes here.

Each kind is a real input: a generated clip, a lavfi pattern, the GStreamer RTSP server of
tests/rtsp.py, the live HLS server of tests/sources/hls_live.py, and a V4L2 webcam where the machine
has one (skipped, saying so, where it has none; its failure case runs everywhere).
"""

from __future__ import annotations

import glob
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from streamer.batcher import Batcher
from streamer.config.schema import (
    FileSourceConfig, HlsSourceConfig, LavfiSourceConfig, RtspSourceConfig, SourceConfig, WebcamSourceConfig,
)  # fmt: skip
from streamer.frames import Frame, ModelInfo
from streamer.pipeline.readers import SourceSet
from streamer.pipeline.summary import Summary
from streamer.sources import AvSource, SourceState, StateChange, build_source
from tests.media import write_clip
from tests.rtsp import MISSING_REASON, RtspServer, free_port, gstreamer_available
from tests.sources.hls_live import running_live_hls

KINDS = ["file", "lavfi", "rtsp", "hls", "webcam"]
HANG_LIMIT_S = 20.0  # far beyond any run here: reaching it means the source hung
STOP_LIMIT_S = 2.0  # "promptly": a frame or one short read after stop is set
FRAMES = 12
LIVE_RETRY = {"open_timeout_s": 5, "read_timeout_s": 3, "backoff_initial_s": 0.1, "backoff_max_s": 0.2}
UNREACHABLE = {"open_timeout_s": 1, "read_timeout_s": 1, "max_attempts": 1}
NO_MODEL = ModelInfo("none", "none", "detection", "none", "none", "", (), (0, 0))  # sources only, no model


@dataclass
class Kind:
    """How to make a working and a broken config of one source kind."""

    name: str
    working: Callable[..., SourceConfig] | None  # None: this machine has no such input
    broken: Callable[[], SourceConfig]
    missing: str = ""  # why `working` is None

    def config(self, **overrides: Any) -> SourceConfig:
        if self.working is None:
            pytest.skip(self.missing)
        return self.working(**overrides)


@pytest.fixture(scope="module")
def rtsp_server() -> Iterator[RtspServer | None]:
    if not gstreamer_available():
        yield None
        return
    with RtspServer(width=160, height=96, fps=15) as server:
        yield server


@pytest.fixture(params=KINDS)
async def kind(request: pytest.FixtureRequest, tmp_path: Path, rtsp_server: RtspServer | None) -> AsyncIterator[Kind]:
    async with AsyncExitStack() as stack:
        yield await _kind(request.param, tmp_path, rtsp_server, stack)


async def _kind(name: str, tmp_path: Path, rtsp_server: RtspServer | None, stack: AsyncExitStack) -> Kind:
    if name == "file":
        clip = str(write_clip(tmp_path / "clip.mp4", frames=20))
        return Kind(name, lambda **o: FileSourceConfig(id=name, path=clip, **o),
                    lambda: FileSourceConfig(id=name, path=str(tmp_path / "absent.mp4")))
    if name == "lavfi":
        return Kind(name, lambda **o: LavfiSourceConfig(id=name, graph="testsrc2=size=64x48:rate=30", **o),
                    lambda: LavfiSourceConfig(id=name, graph="no_such_filter=size=64x48"))
    if name == "rtsp":
        closed = f"rtsp://127.0.0.1:{free_port()}/stream"
        working = None if rtsp_server is None else (
            lambda **o: RtspSourceConfig(id=name, url=rtsp_server.url(), **{**LIVE_RETRY, **o}))
        return Kind(name, working, lambda: RtspSourceConfig(id=name, url=closed, **UNREACHABLE), MISSING_REASON)
    if name == "hls":
        hls = await stack.enter_async_context(running_live_hls())
        closed = f"http://127.0.0.1:{free_port()}/live/index.m3u8"
        return Kind(name, lambda **o: HlsSourceConfig(id=name, url=hls.url, **{**LIVE_RETRY, **o}),
                    lambda: HlsSourceConfig(id=name, url=closed, **UNREACHABLE))
    devices = sorted(glob.glob("/dev/video*"))
    working = (lambda **o: WebcamSourceConfig(id=name, device=devices[0], **o)) if devices else None
    return Kind(name, working, lambda: WebcamSourceConfig(id=name, device="/dev/video-absent"),
                "no V4L2 device (/dev/video*) on this machine")


def endless(kind: Kind) -> SourceConfig:
    """A config that runs until stopped: a file loops, paced to real time."""
    return kind.config(loop=True, realtime=True) if kind.name == "file" else kind.config()


async def read(source: AvSource, stop_after: int | None = None) -> tuple[list[Frame | StateChange], float]:
    """Everything `source.frames` yields (in a thread, as the pipeline runs it); with `stop_after`,
    stop is set once that many frames came: also how long it then took to end."""
    stop, stopped_at = threading.Event(), 0.0

    def run() -> list[Frame | StateChange]:
        nonlocal stopped_at
        items: list[Frame | StateChange] = []
        for item in source.frames(stop):
            items.append(item)
            if stop_after is not None and not stop.is_set() and len(frames_of(items)) >= stop_after:
                stop.set()
                stopped_at = time.monotonic()
        return items

    try:
        with anyio.fail_after(HANG_LIMIT_S):
            items = await anyio.to_thread.run_sync(run, abandon_on_cancel=True)
    finally:
        stop.set()
    return items, (time.monotonic() - stopped_at if stopped_at else 0.0)


def frames_of(items: list[Frame | StateChange]) -> list[Frame]:
    return [item for item in items if isinstance(item, Frame)]


async def run_set(config: SourceConfig, take_every_s: float = 0.0) -> tuple[SourceSet, list[Frame]]:
    """Run one source the way the pipeline does (reader, queue, batcher) with a consumer that takes
    a frame every `take_every_s`, until the source ends; the task group must end without an error."""
    batcher = Batcher(max_batch_size=1, max_wait_ms=0)
    sources = SourceSet(batcher, Summary(NO_MODEL, outputs=[]))
    taken: list[Frame] = []
    with anyio.fail_after(HANG_LIMIT_S):
        async with anyio.create_task_group() as group:
            sources.start(group, [config])
            while (batch := await batcher.next_batch()) is not None:
                taken += batch
                await anyio.sleep(take_every_s)
    sources.final_counts()  # as the runner does: the queue's drops after its reader ended
    return sources, taken


# --- the promises ---------------------------------------------------------------------------------


async def test_source_when_read_gives_frames_with_its_id_an_increasing_index_a_monotonic_pts_and_wall_time(
    kind: Kind,
) -> None:
    source = build_source(kind.config(max_frames=FRAMES))
    before = time.time()

    items, _ = await read(source)

    frames = frames_of(items)
    assert {frame.source_id for frame in frames} == {kind.name}
    assert [frame.index for frame in frames] == list(range(FRAMES))
    assert all(b.pts > a.pts for a, b in zip(frames, frames[1:]))
    assert all(before <= a.wall_time <= b.wall_time <= time.time() for a, b in zip(frames, frames[1:]))
    changes = [item.state for item in items if isinstance(item, StateChange)]
    assert changes[:2] == [SourceState.CONNECTING, SourceState.RUNNING] and changes[-1] is SourceState.ENDED
    assert isinstance(items[1], StateChange) and items[-1] == StateChange(SourceState.ENDED, "max_frames reached")


async def test_source_when_its_queue_blocks_loses_no_frame_to_a_slow_consumer(kind: Kind) -> None:
    sources, taken = await run_set(kind.config(max_frames=FRAMES, policy="block", queue_size=2), take_every_s=0.05)

    report = sources.summary.sources[kind.name]
    assert [frame.index for frame in taken] == list(range(FRAMES))
    assert (report.read, report.dropped, report.stale) == (FRAMES, 0, 0)


async def test_source_when_its_queue_keeps_the_latest_delivers_the_newest_and_counts_every_drop(kind: Kind) -> None:
    config = kind.config(max_frames=FRAMES, policy="latest", queue_size=2)
    sources, taken = await run_set(config, take_every_s=0.2)

    report = sources.summary.sources[kind.name]
    indices = [frame.index for frame in taken]
    assert all(b > a for a, b in zip(indices, indices[1:])) and indices[-1] == FRAMES - 1  # the newest is kept
    assert report.dropped > 0 and report.read == FRAMES == len(taken) + report.dropped + report.stale


async def test_source_when_stopped_ends_promptly_saying_so(kind: Kind) -> None:
    items, took_s = await read(build_source(endless(kind)), stop_after=3)

    assert took_s < STOP_LIMIT_S
    assert 3 <= len(frames_of(items)) <= 5  # what was in hand when stop came
    assert items[-1] == StateChange(SourceState.ENDED, "stopped")


async def test_source_when_it_fails_reports_failed_as_a_state_change_not_an_exception(kind: Kind) -> None:
    sources, taken = await run_set(kind.broken())  # run_set fails the test if an error escapes the group

    report = sources.summary.sources[kind.name]
    assert not taken and sources.states[kind.name] is SourceState.FAILED
    failed = sources.events[-1]
    assert failed.state is SourceState.FAILED and failed.reason is not None and f"source {kind.name!r}" in failed.reason
    assert report.state == "failed" and report.error is not None and report.attempts >= 1


async def test_source_when_it_ran_counted_its_attempts_frames_and_outages(kind: Kind) -> None:
    sources, taken = await run_set(kind.config(max_frames=FRAMES, policy="block"))

    stats, report = sources.readers[kind.name].source.stats, sources.summary.sources[kind.name]
    assert len(taken) == report.read == stats.frames == FRAMES
    assert (stats.attempts, stats.sessions, stats.reconnects, stats.failures) == (1, 1, 0, 0)
    assert (report.attempts, report.reconnects, report.state) == (1, 0, "ended")
