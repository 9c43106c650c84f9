"""The source readers' threads, and the lower CPU priority a camera's decoding runs at.

A camera that catches up (an RTSP or webcam source under `latest`: once its decoded frames run
half its latency budget late, at least 0.5 s, it reads on to its next keyframe, sources/catch_up.py) decodes at a lower priority
than the rest of the process. On cores that cannot serve every camera, the model then gets the CPU
it needs to turn the frames already decoded into results, and the decoders take what is left,
skipping to their next keyframe when they fall behind. At equal priority, decoding (most of what a
camera costs) took its share of the cores whatever the model needed, and the model fell behind:
frames were decoded only to be dropped as too late (docs/batching.md gives the figures). Sources
that cannot catch up (files, generated patterns, HLS) keep the normal priority: a decoder that
yields would fall behind them for good.

An unprivileged process cannot raise a thread's priority back, so each reader runs in a thread of
its own, never in anyio's pool, whose threads go on to run other work (the model among it).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from typing import Callable, TypeVar

import anyio
from anyio.lowlevel import EventLoopToken, current_token

log = logging.getLogger(__name__)

T = TypeVar("T")

DECODE_NICENESS = 10  # added to a catching-up camera's decode thread: ~1/9 of a normal thread's weight


async def run_in_own_thread(function: Callable[[EventLoopToken], T], name: str) -> T:
    """`function(token)` in a new daemon thread, awaited; `token` is what its calls back into the
    event loop (`anyio.from_thread`) pass. Cancelling the wait abandons the thread, which must then
    end on its own (it may no longer reach the event loop)."""
    token = current_token()
    done = anyio.Event()
    outcome: list[tuple[bool, object]] = []

    def target() -> None:
        try:
            outcome.append((True, function(token)))
        except BaseException as exc:  # handed to the awaiting task, which raises it
            outcome.append((False, exc))
        finally:
            with contextlib.suppress(RuntimeError):  # the event loop has ended: nobody waits
                anyio.from_thread.run_sync(done.set, token=token)

    threading.Thread(target=target, name=name, daemon=True).start()
    await done.wait()
    succeeded, value = outcome[0]
    if not succeeded:
        raise value  # type: ignore[misc]
    return value  # type: ignore[return-value]


def yield_cpu(what: str, niceness: int = DECODE_NICENESS) -> bool:
    """Lower the calling thread's CPU priority by `niceness` (Linux, where a thread has its own);
    False where it cannot (logged at debug level; the thread then just keeps its priority)."""
    if sys.platform != "linux":
        return False
    try:
        thread = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, thread, min(19, os.getpriority(os.PRIO_PROCESS, thread) + niceness))
    except OSError as exc:  # a sandbox that forbids it
        log.debug("%s: its decode thread keeps its priority: %s", what, exc)
        return False
    return True
