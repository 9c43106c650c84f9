"""Density, streamer's side: N RTSP cameras at max_fps through `streamer.open`, in a process of its own.

Every source is `type = "rtsp"` with `max_fps` and nothing else set (streamer's defaults: a `latest`
queue of 2, batching and workers as streamer picks them), the model is the ONNX file given. A
callback sink takes, for every result, the frame's capture time on the stream's clock
(`StreamClock`: the earliest `wall_time - pts` seen, plus pts), as the inference runner takes it;
latency is now minus that. The window (density_window.py) opens `--warmup` s after the first result
and lasts `--seconds`: per source the results of the frames captured in it, their latencies, and the
process's CPU seconds over it. Before the run,
the model's CPU time per frame (`infer_cpu_ms`: process CPU over batch-1 `detect` calls on frames of
the clip) is measured, for the CPU split. `--decode-only` instead reads the sources for the window
with no model (the frames are dropped as they come): the CPU a camera's decoding costs; with
`--no-skip` every packet is decoded, as sources did before decode_skip.py.
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import anyio  # noqa: E402

import streamer  # noqa: E402
from bench.peers.density_window import ResultWindow, decode_window  # noqa: E402
from bench.peers.measure import StreamClock, cpu_seconds, report  # noqa: E402
from streamer.config import load_config  # noqa: E402
from streamer.config.schema import FileSourceConfig, RtspSourceConfig  # noqa: E402
from streamer.frames import Frame, Result  # noqa: E402
from streamer.pipeline.runner import load_model  # noqa: E402
from streamer.sources import AvSource  # noqa: E402

CPU_RUNS = 20


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--clip", required=True, help="the clip the cameras serve (frames for infer_cpu_ms)")
    parser.add_argument("--urls", nargs="+", required=True)
    parser.add_argument("--max-fps", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--decode-only", action="store_true")
    parser.add_argument("--no-skip", action="store_true", help="decode every packet (as before decode skipping)")
    parser.add_argument("--latency-budget-ms", type=float, help="the sources' latency_budget_ms (streamer's default: auto)")
    return parser.parse_args()


class Window(ResultWindow):
    """Latency on the stream's clock, one StreamClock per source and session (a reconnect restarts pts)."""

    def __init__(self, cameras: list[str], warmup: float, seconds: float) -> None:
        super().__init__(cameras, warmup, seconds)
        self.clocks: dict[tuple[str, int], StreamClock] = {}

    def frame(self, frame: Frame) -> None:
        clock = self.clocks.setdefault((frame.source_id, frame.session), StreamClock())
        self.result(frame.source_id, clock.captured(frame.wall_time, frame.pts))


def infer_cpu_ms(model: Any, clip: str) -> float:
    probe = AvSource(FileSourceConfig(id="probe", path=clip, max_frames=8))
    frames = [item for item in probe.frames(threading.Event()) if isinstance(item, Frame)]
    for frame in frames[:3]:
        model.detect([frame])
    started = cpu_seconds()
    for index in range(CPU_RUNS):
        model.detect([frames[index % len(frames)]])
    return 1000 * (cpu_seconds() - started) / CPU_RUNS


def run_pipeline(args: argparse.Namespace, ids: list[str]) -> dict[str, Any]:
    budget = {} if args.latency_budget_ms is None else {"latency_budget_ms": args.latency_budget_ms}
    sources = [{"type": "rtsp", "id": id, "url": url, "max_fps": args.max_fps, **budget} for id, url in zip(ids, args.urls)]
    config = load_config({"model": {"id": args.model}, "sources": sources})
    model = load_model(config)
    cost = infer_cpu_ms(model, args.clip)
    window = Window(ids, args.warmup, args.seconds)

    async def on_result(result: Result) -> None:
        window.frame(result.frame)

    async def pipeline() -> Any:
        async with streamer.open(config, model=model, sinks=[streamer.CallbackSink(on_result)]) as stream:
            with anyio.move_on_after(args.warmup + args.seconds + 60):
                async with anyio.create_task_group() as group:
                    group.start_soon(stream.wait)
                    await anyio.to_thread.run_sync(window.done.wait)
                    group.cancel_scope.cancel()
        return stream.summary

    summary = anyio.run(pipeline)
    reports = summary.sources.values()
    return window.measured() | {
        "infer_cpu_ms": cost,
        "skipped_before_decode": sum(report.skipped_before_decode for report in reports),
        "over_max_fps": sum(report.over_max_fps for report in reports),
        "behind_live": sum(report.behind_live for report in reports),
        "queue_dropped": sum(report.dropped + report.stale for report in reports),
        "stale": sum(report.stale for report in reports),
        "read": sum(report.read for report in reports),
        "decode_errors": sum(report.decode_errors for report in reports),
        "failed": [f"{report.source_id}: {report.error}" for report in summary.failed],
    }


def run_decode_only(args: argparse.Namespace, ids: list[str]) -> dict[str, Any]:
    """The sources alone, each in a thread, frames dropped as they come."""
    counts = dict.fromkeys(ids, 0)
    sources = [AvSource(RtspSourceConfig(id=id, url=url, max_fps=args.max_fps)) for id, url in zip(ids, args.urls)]

    def reader(source: AvSource) -> Callable[[threading.Event], None]:
        def read(stop: threading.Event) -> None:
            for item in source.frames(stop):
                counts[source.id] += isinstance(item, Frame)

        return read

    measured = decode_window({source.id: reader(source) for source in sources}, counts, args.warmup, args.seconds)
    return measured | {"skipped_before_decode": sum(source.stats.skipped_before_decode for source in sources),
                       "over_max_fps": sum(source.stats.over_max_fps for source in sources)}


def main() -> None:
    args = parse_args()
    if args.no_skip:
        from streamer.sources import decode_skip

        decode_skip.DecodeSkipper.skip = lambda self, packet: False  # type: ignore[method-assign]
    ids = [f"cam{index}" for index in range(len(args.urls))]
    report(run_decode_only(args, ids) if args.decode_only else run_pipeline(args, ids))


if __name__ == "__main__":
    main()
