"""`streamer.open` leaves the caller's event loop free: probing, loading and file I/O run in threads."""

from __future__ import annotations

import time

import anyio

import streamer
from streamer.engine.environment import compute_environment
from tests.media import write_clip
from tests.pipeline.helpers import file_source, pipeline_config, read_jsonl

PERIOD_S = 0.005
# What is left: threads contending for the GIL, and C extensions that hold it while they initialise
# (ONNX Runtime's). Measured on a 2-core machine at load 3-4: 0.08-0.21 s (before: 1.7 s, the
# probe importing torch and the model loading on the loop thread).
MAX_STALL_S = 0.25


class Heartbeat:
    """Sleeps PERIOD_S in a loop and keeps the worst lateness of a wake-up: the loop's longest stall."""

    def __init__(self) -> None:
        self.beats = 0
        self.worst_stall_s = 0.0

    async def run(self) -> None:
        while True:
            asked = time.perf_counter() + PERIOD_S
            await anyio.sleep(PERIOD_S)
            self.worst_stall_s = max(self.worst_stall_s, time.perf_counter() - asked)
            self.beats += 1


async def test_open_when_loading_running_and_closing_keeps_the_event_loop_responsive(tmp_path):
    compute_environment.cache_clear()  # probe the machine again, as a new process does
    clip = write_clip(tmp_path / "clip.mp4", frames=30)
    sinks = [{"type": "jsonl", "path": str(tmp_path / "out.jsonl")}, {"type": "video", "path": str(tmp_path / "out.mp4")}]
    config = {**pipeline_config(file_source(clip, "cam"), sinks=sinks), "model": {"id": "centerface"}}
    heartbeat = Heartbeat()

    async with anyio.create_task_group() as group:
        group.start_soon(heartbeat.run)
        async with streamer.open(config, results=False) as stream:
            summary = await stream.wait()
        group.cancel_scope.cancel()

    print(f"worst event-loop stall: {heartbeat.worst_stall_s:.3f} s over {heartbeat.beats} beats")
    assert summary.frames == 30 and len(read_jsonl(tmp_path / "out.jsonl")) == 30
    assert (tmp_path / "out.mp4").stat().st_size > 0
    assert heartbeat.worst_stall_s < MAX_STALL_S
