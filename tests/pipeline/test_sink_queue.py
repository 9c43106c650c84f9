"""A sink's own queue: what it hands the sink, and the idle call when nothing comes."""

from __future__ import annotations

import json

import anyio
import numpy as np

from streamer.frames import Detections, Frame, ModelInfo, Result
from streamer.pipeline.sink_queue import IDLE_AFTER_S, SinkQueue
from streamer.sinks import JsonlSink

INFO = ModelInfo("m", "yolo", "object-detection", "onnxruntime-cpu", "m.onnx", "0" * 64, ("person",), (32, 32))


def result(index: int) -> Result:
    frame = Frame("cam", index, index / 10, 1.7e9 + index, image=np.zeros((4, 4, 3), np.uint8))
    return Result(frame, Detections.empty(), INFO)


async def test_sink_queue_when_results_stop_coming_the_jsonl_lines_reach_the_file_before_close(tmp_path):
    path = tmp_path / "out.jsonl"
    queue = SinkQueue(8)
    async with JsonlSink(path=str(path)) as sink, anyio.create_task_group() as group:
        group.start_soon(queue.feed, sink)
        for index in range(3):  # quicker than the sink's own flush interval: held in its buffer
            await queue.put(result(index))
        await anyio.sleep(IDLE_AFTER_S + 0.3)

        written = [json.loads(line)["frame_index"] for line in path.read_text().splitlines()]
        queue.close()

    assert written == [0, 1, 2]
    assert queue.report.written == 3
