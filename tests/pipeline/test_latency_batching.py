"""Live sources batched to their latency budget, through the real pipeline: the batch size the
batcher learns to choose, and where it shows (the summary, /metrics)."""

from __future__ import annotations

import anyio
import pytest

import streamer
from streamer.engine import AutoModel
from streamer.service.metrics import PipelineMetrics
from tests.service.helpers import parse, value


@pytest.fixture(scope="module")
def linear_centerface():
    """The real CenterFace, loaded to run one frame per ONNX Runtime call: a batch of N frames costs
    N single frames, as batching does on a CPU, only without the noise."""
    return AutoModel.from_pretrained("centerface", batch_size=1)


def camera(id: str) -> dict:
    return {"type": "lavfi", "id": id, "graph": "testsrc2=size=320x180:rate=30", "latency_budget_ms": 1000}


async def test_live_sources_end_at_batches_of_one_when_batching_costs_linear_time(linear_centerface):
    metrics = PipelineMetrics()
    config = {
        "sources": [camera("a"), camera("b")],
        "model": {"workers": 1},  # one worker: a batch's time is not shared with another worker's
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
    assert stream.summary.frames < 1.3 * stream.summary.batches  # batches of one, but for the tries
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
