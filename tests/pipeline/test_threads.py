"""The readers' own threads, and the lower priority a catching-up camera decodes at."""

from __future__ import annotations

import os
import sys
import threading

import anyio
import anyio.from_thread
import pytest
from anyio.lowlevel import EventLoopToken

import streamer
from streamer.pipeline.threads import DECODE_NICENESS, run_in_own_thread, yield_cpu
from tests.rtsp import RtspServer, gstreamer_available

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="a thread has a priority of its own on Linux only")


def _niceness(thread: threading.Thread) -> int:
    return os.getpriority(os.PRIO_PROCESS, thread.native_id)  # type: ignore[arg-type]


async def test_run_in_own_thread_when_the_function_returns_gives_its_value_from_a_new_named_thread():
    loop_thread = threading.current_thread()

    def work(token: EventLoopToken) -> tuple[str, bool, str]:
        here = threading.current_thread()
        return here.name, here is loop_thread, anyio.from_thread.run_sync(lambda: "back on the loop", token=token)

    assert await run_in_own_thread(work, "streamer source cam") == ("streamer source cam", False, "back on the loop")


async def test_run_in_own_thread_when_the_function_raises_raises_it_in_the_awaiting_task():
    def work(token: EventLoopToken) -> None:
        raise ValueError("broken camera")

    with pytest.raises(ValueError, match="broken camera"):
        await run_in_own_thread(work, "streamer source cam")


async def test_run_in_own_thread_when_the_wait_is_cancelled_leaves_the_thread_to_end_on_its_own():
    release, ended = threading.Event(), threading.Event()

    def work(token: EventLoopToken) -> None:
        release.wait(5)
        ended.set()

    with anyio.move_on_after(0.1) as scope:
        await run_in_own_thread(work, "streamer source stuck")
    release.set()

    assert scope.cancelled_caught
    assert await anyio.to_thread.run_sync(ended.wait, 5)


@linux_only
def test_yield_cpu_when_on_linux_lowers_only_the_calling_threads_priority():
    seen: dict[str, int] = {}

    def work() -> None:
        before = _niceness(threading.current_thread())
        seen["yielded"] = yield_cpu("source 'cam'")
        seen["raised_by"] = _niceness(threading.current_thread()) - before

    thread = threading.Thread(target=work)
    before_here = _niceness(threading.current_thread())
    thread.start()
    thread.join()

    assert seen["yielded"] and seen["raised_by"] == min(DECODE_NICENESS, 19 - before_here)
    assert _niceness(threading.current_thread()) == before_here


@linux_only
async def test_readers_when_a_camera_catches_up_decode_it_below_the_priority_of_a_file(centerface, clip):
    if not gstreamer_available():
        pytest.skip("no GStreamer RTSP server")
    server = RtspServer(width=320, height=240, fps=15).start()
    config = {
        "sources": [
            {"type": "rtsp", "id": "cam", "url": server.url()},
            {"type": "file", "id": "clip", "path": str(clip), "loop": True, "realtime": True},
        ],
    }
    try:
        async with streamer.open(config, model=centerface, keep_alive=True, results=False) as stream:
            with anyio.fail_after(15):
                while not all(report.frames for report in stream.summary.sources.values()):
                    await anyio.sleep(0.05)
            threads = {thread.name: thread for thread in threading.enumerate()}
            camera, file = threads["streamer source cam"], threads["streamer source clip"]
            niceness = {"cam": _niceness(camera), "clip": _niceness(file), "loop": _niceness(threading.current_thread())}
    finally:
        server.stop()

    assert niceness["clip"] == niceness["loop"]
    assert niceness["cam"] == min(19, niceness["loop"] + DECODE_NICENESS)
