"""The measuring window both density runners use (standard library only: it runs in either venv).

`ResultWindow` opens `warmup` s after the first result and lasts `seconds`: results per camera,
their latencies and the process's CPU seconds over it. `decode_window` does the same for readers
with no model: it sleeps through the warmup and the window and reads their counts on the way.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from bench.peers.measure import cpu_seconds


class ResultWindow:
    def __init__(self, cameras: list[str], warmup: float, seconds: float) -> None:
        self.warmup, self.seconds = warmup, seconds
        self.counts = dict.fromkeys(cameras, 0)
        self.latencies_ms: list[float] = []
        self.first: float | None = None
        self.cpu: list[float] = []
        self.done = threading.Event()

    def result(self, camera: str, latency_s: float) -> bool:
        """One result in hand; True while it falls inside the window."""
        now = time.monotonic()
        if self.first is None:
            self.first = now
        elapsed = now - self.first
        if elapsed >= self.warmup and not self.cpu:
            self.cpu.append(cpu_seconds())
        if self.warmup <= elapsed <= self.warmup + self.seconds:
            self.counts[camera] += 1
            self.latencies_ms.append(1000 * latency_s)
            return True
        if elapsed > self.warmup + self.seconds and not self.done.is_set():
            self.cpu.append(cpu_seconds())
            self.done.set()
        return False

    def measured(self) -> dict[str, Any]:
        cpu_s = self.cpu[1] - self.cpu[0] if len(self.cpu) == 2 else float("nan")
        return {"counts": self.counts, "latencies_ms": [round(value, 2) for value in self.latencies_ms],
                "window_s": self.seconds, "cpu_s": cpu_s}


def decode_window(readers: dict[str, Callable[[threading.Event], None]], counts: dict[str, int],
                  warmup: float, seconds: float) -> dict[str, Any]:
    """Start each reader (a function of a stop event, counting into `counts`) in a thread; the
    frames and CPU seconds of the `seconds` after `warmup`."""
    stop = threading.Event()
    for read in readers.values():
        threading.Thread(target=read, args=(stop,), daemon=True).start()
    time.sleep(warmup)
    before, at_start = cpu_seconds(), dict(counts)
    time.sleep(seconds)
    cpu_s = cpu_seconds() - before
    stop.set()
    return {"counts": {camera: counts[camera] - at_start[camera] for camera in readers}, "window_s": seconds, "cpu_s": cpu_s}
