"""Live sources batched to their latency budget, through the real pipeline: the batch size the
batcher learns to choose, and where it shows (the summary, /metrics)."""

from __future__ import annotations

import time
from typing import Any, Sequence, cast

import anyio
import pytest

import streamer
from streamer.engine import AutoModel, DetectionModel
from streamer.frames import Detections, Frame
from streamer.service.metrics import PipelineMetrics
from tests.service.helpers import parse, value


PER_FRAME_S = 0.03  # what each frame of a batch costs on top of the model's own (small) time


class Costed:
    """The real CenterFace at a small input, made to cost `per_batch_s + per_frame_s * N` for N
    frames, with the machine's noise far below that."""

    def __init__(self, model: DetectionModel, per_batch_s: float, per_frame_s: float) -> None:
        self.model, self.per_batch_s, self.per_frame_s = model, per_batch_s, per_frame_s

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def detect(self, frames: Sequence[Frame]) -> list[Detections]:
        time.sleep(self.per_batch_s + self.per_frame_s * len(frames))
        return self.model.detect(frames)


@pytest.fixture(scope="module")
def small_centerface() -> DetectionModel:
    return AutoModel.from_pretrained("centerface", input_size=(64, 64))


@pytest.fixture
def linear_centerface(small_centerface) -> DetectionModel:
    """A batch of N costs N single frames, as batching does on a CPU."""
    return cast(DetectionModel, Costed(small_centerface, 0.0, PER_FRAME_S))


def camera(id: str) -> dict:
    return {"type": "lavfi", "id": id, "graph": "testsrc2=size=64x48:rate=30", "latency_budget_ms": 1000}


async def test_live_sources_end_at_batches_of_one_when_batching_costs_linear_time(linear_centerface):
    metrics = PipelineMetrics()
    config = {  # one worker, so a second frame waits while a batch runs (two would each take one at once)
        "model": {"id": "centerface", "workers": 1},
        "sources": [camera("a"), camera("b")],
        "batching": {"max_batch_size": 4, "max_wait_ms": 50},
    }

    with anyio.fail_after(60):
        async with streamer.open(config, model=linear_centerface, observers=[metrics]) as stream:
            metrics.attach(stream)
            async for _ in stream:
                if stream.summary.batches >= 30:
                    stream.stop()
    costs = stream.batcher.costs

    key = next(iter(costs.snapshot()))
    tried = costs.snapshot()[key]
    assert {1, 2} <= set(tried)  # it tried a larger batch, and learnt it costs about twice as much
    assert costs.last is not None and costs.last.size == 1
    assert stream.summary.frames <= 1.5 * stream.summary.batches  # batches of one, but for the tries
    assert "live batch size: 1" in stream.summary.render()
    samples = parse(metrics.exposition()[0].decode())
    assert value(samples, "streamer_live_batch_size_frames") == 1
    labels = {"backend": key.backend, "input": key.input, "size": "1"}
    assert value(samples, "streamer_batch_cost_seconds", **labels) == pytest.approx(tried[1][0])
    assert value(samples, "streamer_batch_cost_observations_total", **labels) == tried[1][1]


async def test_file_sources_keep_batching_for_throughput(linear_centerface, clip):
    config = {"sources": [{"type": "file", "id": "clip", "path": str(clip)}], "batching": {"max_batch_size": 4}}

    async with streamer.open(config, model=linear_centerface) as stream:
        summary = await stream.wait()

    assert summary.frames == 30 and summary.batches <= 10  # batches of 4 (a few smaller), not of 1
    assert stream.batcher.costs.last is None  # no live choice was made


async def test_live_sources_batch_when_batches_are_nearly_free(small_centerface):
    nearly_free = cast(DetectionModel, Costed(small_centerface, 0.05, 0.001))  # as on a GPU
    config = {"sources": [camera(id) for id in "abcd"], "batching": {"max_batch_size": 4, "max_wait_ms": 50}}

    with anyio.fail_after(60):
        async with streamer.open(config, model=nearly_free) as stream:
            async for _ in stream:
                if stream.summary.batches >= 30:
                    stream.stop()

    assert stream.batcher.costs.last is not None and stream.batcher.costs.last.size >= 3
