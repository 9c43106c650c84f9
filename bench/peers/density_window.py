"""The measuring window both density runners use (standard library only: it runs in either venv).

`ResultWindow` opens `warmup` s after the first result and lasts `seconds`: results per camera of
the frames captured in it, their latencies and the process's CPU seconds over it. `decode_window` does the same for readers
with no model: it sleeps through the warmup and the window and reads their counts on the way.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from bench.peers.measure import cpu_seconds

GRACE_S = 1.0


class ResultWindow:
    """Frames captured (on the stream's clock) from `warmup` s after the first result, for `seconds`:
    counted by capture time, so a result's delay does not move it in or out of the window. The
    window closes GRACE_S after its end (a frame still on its way by then is later than p99 may be)."""

    def __init__(self, cameras: list[str], warmup: float, seconds: float) -> None:
        self.warmup, self.seconds = warmup, seconds
        self.counts = dict.fromkeys(cameras, 0)
        self.latencies_ms: list[float] = []
        self.start: float | None = None  # wall-clock time the window opens
        self.cpu: list[float] = []
        self.done = threading.Event()

    def result(self, camera: str, captured: float) -> bool:
        """One result in hand, of a frame captured at `captured` (time.time()); True if in the window."""
        now = time.time()
        if self.start is None:
            self.start = now + self.warmup
            threading.Thread(target=self._clock, daemon=True).start()
        if not self.start <= captured <= self.start + self.seconds:
            return False
        self.counts[camera] += 1
        self.latencies_ms.append(1000 * (now - captured))
        return True

    def _clock(self) -> None:
        assert self.start is not None
        for moment in (self.start, self.start + self.seconds):
            time.sleep(max(0.0, moment - time.time()))
            self.cpu.append(cpu_seconds())
        time.sleep(GRACE_S)
        self.done.set()

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
