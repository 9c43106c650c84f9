"""The callback sink compare.py adds to the config it hands `streamer run`: the streamer contender's meter.

`streamer run` builds its sinks right after loading the model, so importing this module opens the
timed window; every result delivered to `on_result` is counted (with STREAMER_BENCH_LIVE=1, with its
latency: now minus the frame's capture time on the stream's clock, `StreamClock` over the source's
`frame.wall_time` and `frame.pts`, as the naive loop's), and at exit the measurements are printed after the
run's summary, as `BENCH_RESULT {json}`. With STREAMER_BENCH_SECONDS set, the process sends itself
SIGTERM that many seconds after the window opens: `streamer run` then stops its sources and flushes
its sinks, as on a Ctrl-C (how live runs end).
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.peers.measure import Meter, StreamClock, report  # noqa: E402
from streamer.frames import Result  # noqa: E402

LIVE = os.environ.get("STREAMER_BENCH_LIVE") == "1"
METER = Meter()
METER.start()
if os.environ.get("STREAMER_BENCH_SECONDS"):
    STOP = threading.Timer(float(os.environ["STREAMER_BENCH_SECONDS"]), os.kill, (os.getpid(), signal.SIGTERM))
    STOP.daemon = True  # a run that ends first does not wait for it
    STOP.start()


INPUT_SHAPE: list[int] = []  # as the model letterboxes frames: [1, 3, height, width]


CLOCKS: dict[tuple[str, object], StreamClock] = {}  # one per source and session (a reconnect restarts pts)


async def on_result(result: Result) -> None:
    frame = result.frame
    clock = CLOCKS.setdefault((frame.source_id, frame.session), StreamClock())
    METER.result(clock.captured(frame.wall_time, frame.pts) if LIVE else None)
    if not INPUT_SHAPE:
        INPUT_SHAPE.extend([1, 3, *reversed(_input_size(result))])


def _input_size(result: Result) -> tuple[int, int]:
    """The (width, height) a batch of this frame goes through at: YOLO exports with dynamic height
    and width are letterboxed to the stride-aligned size the frame needs (DetectionModel.fit_to_frames)."""
    import numpy as np

    from streamer.engine.preprocess import InputSpec
    from streamer.engine.models.base import fitted_size

    width, height = result.model.input_size
    if result.model.architecture != "yolo":
        return width, height
    return fitted_size(result.frame.width, result.frame.height, InputSpec(width, height, np.dtype(np.float32)), 32)


atexit.register(lambda: report(METER.finish(input_shape=INPUT_SHAPE)))
