"""What every contender's runner measures, the same way, and how it reports it (standard library only).

A runner calls `meter.start()` once its model is loaded (the timed window opens), `meter.result(...)`
for every frame whose result is in the runner's hands, and `report(meter.finish(...))` at the end,
which prints one line `BENCH_RESULT {json}` on stdout for compare.py to read.

Measured inside the process, over the timed window: frames, wall seconds, CPU seconds (user +
system, every thread: `getrusage(RUSAGE_SELF)`), and for each result its latency (now minus the
frame's capture wall time, when the runner knows it) and the time it arrived. Peak RSS is read by
compare.py from the whole process (`wait4`), not here.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from typing import Any

MARKER = "BENCH_RESULT "


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Meter:
    """Counts results and their latencies between `start()` and `finish()`."""

    def __init__(self) -> None:
        self.frames = 0
        self.latencies_ms: list[float] = []
        self.arrivals_s: list[float] = []  # when each latency was taken, seconds after start()
        self._wall = self._cpu = 0.0
        self._last_result = 0.0

    def start(self) -> None:
        self._wall, self._cpu = time.perf_counter(), cpu_seconds()
        self._last_result = self._wall

    def elapsed(self) -> float:
        """Seconds since start()."""
        return time.perf_counter() - self._wall

    def result(self, captured_wall_time: float | None = None) -> None:
        """One frame's result is ready; `captured_wall_time` is time.time() when the frame was captured."""
        self.frames += 1
        self._last_result = time.perf_counter()
        if captured_wall_time is not None:
            self.latencies_ms.append(1000 * (time.time() - captured_wall_time))
            self.arrivals_s.append(self._last_result - self._wall)

    def finish(self, **extra: Any) -> dict[str, Any]:
        """The measurements; the window closes at the last result (what shutdown costs is left out)."""
        return {
            "frames": self.frames,
            "wall_s": max(1e-9, self._last_result - self._wall),
            "cpu_s": cpu_seconds() - self._cpu,
            "latencies_ms": [round(value, 3) for value in self.latencies_ms],
            "arrivals_s": [round(value, 3) for value in self.arrivals_s],
            **extra,
        }


class StreamClock:
    """A live frame's capture time on the stream's own clock: origin + pts.

    The origin is the smallest `handed_over - pts` seen so far: a frame that sat in a socket or a
    queue while the reader was busy gets the time the camera sent it, not the time it was read.
    """

    def __init__(self) -> None:
        self.origin = float("inf")

    def captured(self, handed_over: float, pts: float | None) -> float:
        if pts is None:
            return handed_over
        self.origin = min(self.origin, handed_over - pts)
        return self.origin + pts


def runner_args(description: str) -> argparse.Namespace:
    """The arguments every runner takes from compare.py."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--model", required=True, help="path to the YOLOv8 .onnx export")
    parser.add_argument("--sources", nargs="+", required=True, help="video files, or rtsp:// URLs with --live")
    parser.add_argument("--live", action="store_true", help="sources are live: stop after --seconds, take latencies")
    parser.add_argument("--seconds", type=float, default=15.0, help="how long a live run lasts")
    parser.add_argument("--imgsz", type=int, default=320, help="the model's input size (square)")
    return parser.parse_args()


def report(measurements: dict[str, Any]) -> None:
    print(MARKER + json.dumps(measurements), flush=True)


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
