"""Scaling: N live lavfi test patterns at a fixed rate through streamer's Python API, in a process of its own.

Builds bench/live_latency.py's live config (`testsrc2` sources paced to real time, policy `latest`,
queue_size 2) for `--sources` sources at `--fps` each and runs it with `run_live` (`streamer.open`
with a callback sink taking `time.time() - frame.wall_time` for every result) for `--seconds`.
Reports the results received after `--warmup` s, and the frames each source dropped or found stale.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import onnxruntime  # noqa: E402

from bench.live_latency import Settings, live_config, parse_size, received_between, run_live  # noqa: E402
from bench.peers.measure import Meter, report  # noqa: E402
from streamer.pipeline.runner import load_model  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--sources", type=int, required=True)
    parser.add_argument("--fps", type=int, default=15)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--size", type=parse_size, default=(1280, 720))
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--max-wait-ms", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    onnxruntime.set_default_logger_severity(3)
    width, height = args.size
    settings = Settings(
        model=args.model, sources=args.sources, seconds=args.seconds, warmup=args.warmup, width=width, height=height,
        batch=args.batch, max_wait_ms=args.max_wait_ms, workers=args.workers, threads=args.threads, runs=1,
    )
    config = live_config(settings, args.fps)
    model, meter = load_model(config), Meter()
    meter.start()
    summary, samples = run_live(config, model, args.seconds)
    steady = received_between(samples, args.warmup, args.seconds)
    reports = summary.sources.values()
    report(meter.finish() | {
        "frames": summary.frames,
        "wall_s": summary.seconds,
        "latencies_ms": [sample.latency_ms for sample in steady],
        "dropped": sum(source.dropped + source.stale for source in reports),
        "read": sum(source.frames + source.dropped + source.stale for source in reports),
        "failed": [f"{source.source_id}: {source.error}" for source in summary.failed],
    })


if __name__ == "__main__":
    main()
