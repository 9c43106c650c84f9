"""Density: how many 1080p30 cameras at max_fps = 5 one machine serves, streamer against Roboflow `inference`.

The cameras: one generated clip (1080p, 30 fps, H.264, `--clip-seconds` long; the astronaut zoom with
grain of bench/throughput.py), served by bench/peers/rtsp_clip_server.py (GStreamer, H.264 passed
through untouched) on N RTSP mounts, every client its own playback paced to the clip's timestamps
by the server's clock, as a camera sends. Both contenders read the very same streams over RTSP/TCP,
so they are fed alike: same bytes, same pace, same transport, and neither can read ahead of real
time. (Each run is shorter than the clip, so no playback reaches its end; a looping file is what
the server would need for longer runs.)

Encoder settings, as IP cameras send: libx264 `veryfast`, High profile, no B-frames (cameras leave
them out for latency; most send I and P frames only), a fixed GOP of 1 s (`g = keyint_min = 30`,
no scene-cut keyframes; cameras use 1-2 s), CRF 23 capped at 6 Mbit/s (a 1080p camera's usual
4-8 Mbit/s VBR). With I and P frames only, what a source can leave undecoded at 5 fps out of 30 is
the tail of each GOP after its last kept frame (5 frames in 30): see streamer/sources/decode_skip.py.

The contenders, each a process of its own, both with the YOLOv8n export at 320 that ships in the
nudenet wheel (as bench/compare.py):
streamer   N `type = "rtsp"` sources with `max_fps = 5` and `latency_budget_ms = 1000` (the p99
           a run is held to, told to streamer as a user with that need would: see below),
           otherwise streamer's defaults, through `streamer.open` (bench/peers/density_streamer.py).
inference  `InferencePipeline.init_with_custom_logic(video_reference=[N urls], max_fps=5)` with
           compare.py's ONNX Runtime detector, in its own venv (bench/.venvs/inference, built on
           first use; bench/peers/density_inference.py). ENABLE_FRAME_DROP_ON_VIDEO_FILE_RATE_LIMITING
           is set, as inference's CLI does: each source then drops to max_fps itself; without it the
           pipeline caps the multiplexed batches at max_fps / N, every camera getting 5 / N fps.

The budget makes the two equivalent: inference takes every frame its sources keep, however long
it waited, so its only limit is the p99 it is judged by; streamer's default budget ("auto", 1.5 x a
batch of one, at least 50 ms) instead drops a live frame a worker could reach only later than that,
which is what a 2x-overloaded camera wall needs (the p99_ms_at_8 figure below runs on it) but not
what this run asks. The RTSP server starts every client's playback at its connect, so cameras
connected together send their frames in step: a burst of N frames every 200 ms, whose last frames
wait N / workers batches. `--budget-ms auto` runs streamer on its default budget instead.

Each run: the frames captured from `--warmup` s after the first result, for `--seconds` (by capture
time on the stream's clock: the earliest handed-over time minus pts, plus pts; so a late result
does not fall out of the window). fps per camera: their results / the window's length (the table
shows the slowest camera's and the mean); latency: result time minus capture time, p50/p99 over
every camera's results. N passes when every camera gets >= 95 % of its rate and p99 <= 1 s, the rate
being 5 fps or less: what the contender gives with one camera (streamer gives 5; inference's sources
pick frames with a random stride around measured fps / max_fps and give 4-4.5 when asked for 5, so
it is held to that, not failed for it). One camera first, then N doubles from 2 until a run fails,
then is bisected. The two searches take turns, a run of one then a run of the other, so the runs
compared (streamer at 2N against inference at N) are minutes apart, not a whole search apart: on
this shared virtual machine the same work ran up to a quarter slower from one run to the next
(bench/throughput.py's naive loop: 19-26 fps in one afternoon). CPU per camera (ms of CPU per
second): the process's CPU over the window / N, split as decode (measured apart: the same streams
read with no model by each contender's own reader, 2 cameras, `--decode-only`), infer (fps x the
model's CPU per frame, measured in the process before its run: letterbox + ONNX Runtime + decoding
the output, batch 1) and rest (what is left: queues, threads, conversion, the pipeline itself).
Decode CPU is also given for streamer with decode skipping off (`--no-skip`), as before it.

The last line printed is, exactly:

    cameras_streamer=<n> cameras_inference=<m> ratio=<n/m> p99_ms_at_8=<x> frame_ms=<y>

where p99_ms_at_8 and frame_ms come from `bench/live_latency.py --sources 8 --defaults` (its last
line), run as a subprocess after the density runs.

Run from the project root:  python bench/density.py [--max-cameras 32] [--seconds 10] [--skip-inference]
"""

from __future__ import annotations

import argparse
import math
import os
import re
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Generator, Sequence

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/density.py` from the project root
    sys.path.insert(0, str(ROOT))

import av  # noqa: E402
import numpy as np  # noqa: E402

from bench.compare import RtspClipServer, measurements, run_process  # noqa: E402
from bench.peers import venvs  # noqa: E402
from bench.throughput import CACHE, add_grain, say, yolov8n_320, zoomed  # noqa: E402

PEERS = ROOT / "bench" / "peers"
FPS, WIDTH, HEIGHT = 30, 1920, 1080
GOP = FPS  # 1 s
CRF, MAXRATE = 23, "6M"
MAX_FPS = 5.0
FPS_SHARE, P99_LIMIT_MS = 0.95, 1000.0
DECODE_CAMERAS = 2
LIVE_LATENCY_SECONDS = 30


# ---- the clip --------------------------------------------------------------------------------


def clip_path(seconds: int) -> Path:
    path = CACHE / f"camera-{WIDTH}x{HEIGHT}-{FPS}fps-gop{GOP}-nob-crf{CRF}-{MAXRATE}-{seconds}s.mp4"
    if not path.exists():
        say(f"encoding {path.name} (once; cached in {CACHE})")
        CACHE.mkdir(parents=True, exist_ok=True)
        (CACHE / ".gitignore").write_text("*\n")
        write_clip(path.with_suffix(".part.mp4"), seconds * FPS)
        path.with_suffix(".part.mp4").rename(path)
    return path


def write_clip(path: Path, frames: int) -> None:
    """The camera stream, as the module docstring says."""
    from skimage import data

    photo, rng = data.astronaut(), np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"preset": "veryfast", "profile": "high", "bf": "0", "g": str(GOP), "keyint_min": str(GOP),
                          "sc_threshold": "0", "crf": str(CRF), "maxrate": MAXRATE, "bufsize": MAXRATE}
        for index in range(frames):
            image = add_grain(zoomed(photo, index, WIDTH, HEIGHT), rng)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


# ---- one run ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One contender at N cameras."""

    tool: str
    cameras: int
    fps: list[float]  # per camera
    latencies_ms: list[float]
    cpu_ms_per_s: float  # per camera
    infer_cpu_ms: float  # per frame
    target: float = MAX_FPS  # the fps each camera must keep 95 % of
    error: str | None = None
    skipped: int = 0  # streamer: frames skipped before decode, whole run
    over: int = 0  # streamer: frames dropped by max_fps, whole run
    queue_dropped: int = 0  # streamer: frames its queues dropped (replaced or stale), whole run

    @property
    def p50(self) -> float:
        return percentile(self.latencies_ms, 50)

    @property
    def p99(self) -> float:
        return percentile(self.latencies_ms, 99)

    @property
    def passed(self) -> bool:
        return self.error is None and min(self.fps, default=0) >= FPS_SHARE * self.target and self.p99 <= P99_LIMIT_MS


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else math.nan


class Contender:
    def __init__(
        self, tool: str, python: Path, runner: Path, model: str, clip: Path, args: argparse.Namespace,
        options: Sequence[str] = (),
    ) -> None:
        self.tool, self.python, self.runner, self.model, self.clip, self.args = tool, python, runner, model, clip, args
        self.options = list(options)  # the runner's own, for its pipeline runs
        self.target = MAX_FPS  # until one camera shows what it gives (calibrate)

    def command(self, urls: Sequence[str], *extra: str) -> list[str]:
        return [str(self.python), str(self.runner), "--model", self.model, "--clip", str(self.clip),
                "--urls", *urls, "--max-fps", str(MAX_FPS), "--warmup", str(self.args.warmup),
                "--seconds", str(self.args.seconds), *extra]

    def measure(self, urls: Sequence[str], *extra: str) -> dict[str, Any]:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        timeout = self.args.warmup + self.args.seconds + 120
        return measurements(run_process(self.command(urls, *extra), env, timeout))

    def run(self, urls: Sequence[str]) -> Run:
        try:
            result = self.measure(urls, *self.options)
        except RuntimeError as exc:
            return Run(self.tool, len(urls), [], [], math.nan, math.nan, self.target, error=str(exc))
        window = result["window_s"]
        fps = [count / window for count in result["counts"].values()]
        failed = result.get("failed") or None
        return Run(self.tool, len(urls), fps, result["latencies_ms"], 1000 * result["cpu_s"] / window / len(urls),
                   result["infer_cpu_ms"], self.target, error="; ".join(failed) if failed else None,
                   skipped=result.get("skipped_before_decode", 0), over=result.get("over_max_fps", 0),
                   queue_dropped=result.get("queue_dropped", 0))

    def decode_cpu(self, urls: Sequence[str], *extra: str) -> float:
        """CPU ms per second per camera of reading `urls` with no model."""
        result = self.measure(urls, "--decode-only", *extra)
        return 1000 * result["cpu_s"] / result["window_s"] / len(urls)


def search(contender: Contender, urls: Sequence[str]) -> Generator[None, None, tuple[int, list[Run]]]:
    """The most cameras that pass: one camera first, whose fps (at most MAX_FPS) becomes the rate
    every camera must keep 95 % of; then doubling, then bisecting (a failure at 1 gives 0). Pauses
    after every run (see `search_in_turn`)."""
    runs: list[Run] = []

    def attempt(n: int) -> Generator[None, None, bool]:
        outcome = contender.run(urls[:n])
        runs.append(outcome)
        say(f"{outcome.tool} x{n}: {describe(outcome)}")
        yield
        return outcome.passed

    first = contender.run(urls[:1])
    if first.fps:
        contender.target = min(MAX_FPS, float(np.mean(first.fps)))
        first = replace(first, target=contender.target)
    runs.append(first)
    say(f"{first.tool} x1: {describe(first)} (the rate to keep: {contender.target:.2f} fps)")
    yield
    if not first.passed:
        return 0, runs
    passing, failing, n = 1, None, 2
    while n <= len(urls):
        if not (yield from attempt(n)):
            failing = n
            break
        passing, n = n, n * 2
    if failing is None:
        return passing, runs
    while failing - passing > 1:
        middle = (passing + failing) // 2
        if (yield from attempt(middle)):
            passing = middle
        else:
            failing = middle
    return passing, runs


def search_in_turn(contenders: Sequence[Contender], urls: Sequence[str]) -> dict[str, tuple[int, list[Run]]]:
    """Every contender's search, one run of each in turn, so that the runs compared meet the machine
    in the same minutes: on a shared virtual machine a core's speed drifts between runs."""
    pending = {contender.tool: search(contender, urls) for contender in contenders}
    found: dict[str, tuple[int, list[Run]]] = {}
    while pending:
        for tool, steps in list(pending.items()):
            try:
                next(steps)
            except StopIteration as done:
                found[tool] = done.value
                del pending[tool]
    return found


def describe(run: Run) -> str:
    if run.error and not run.fps:
        return f"FAILED: {run.error}"
    verdict = "pass" if run.passed else "fail"
    return (f"fps/camera min {min(run.fps, default=0):.2f} mean {np.mean(run.fps) if run.fps else 0:.2f}, "
            f"p50 {run.p50:.0f} ms, p99 {run.p99:.0f} ms, {run.cpu_ms_per_s:.0f} CPU ms/s per camera"
            + (f", {run.queue_dropped} dropped by the queues" if run.tool == "streamer" else "") + f": {verdict}")


# ---- the table -------------------------------------------------------------------------------


HEADER = ("tool", "N", "target", "fps/cam min", "fps/cam mean", "p50 ms", "p99 ms", "CPU ms/s/cam", "decode", "infer", "rest", "")


def row(run: Run, decode_ms: float) -> tuple[str, ...]:
    if run.error and not run.fps:
        return (run.tool, str(run.cameras), "-", "-", "-", "-", "-", "-", "-", "-", "-", f"FAILED: {run.error[:60]}")
    mean = float(np.mean(run.fps)) if run.fps else 0.0
    infer = mean * run.infer_cpu_ms
    rest = run.cpu_ms_per_s - decode_ms - infer
    return (run.tool, str(run.cameras), f"{run.target:.2f}", f"{min(run.fps):.2f}", f"{mean:.2f}", f"{run.p50:.0f}", f"{run.p99:.0f}",
            f"{run.cpu_ms_per_s:.0f}", f"{decode_ms:.0f}", f"{infer:.0f}", f"{rest:.0f}", "pass" if run.passed else "fail")


def render(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(line[index]) for line in [HEADER, *rows]) for index in range(len(HEADER))]
    lines = ["  ".join(cell.rjust(width) if index else cell.ljust(width) for index, (cell, width) in enumerate(zip(line, widths)))
             for line in [HEADER, *rows]]
    return "\n".join(line.rstrip() for line in lines)


# ---- live_latency ----------------------------------------------------------------------------


def live_latency(seconds: int) -> tuple[float, float]:
    """(p99_ms, frame_ms) from bench/live_latency.py --sources 8 --defaults (its last line)."""
    command = [sys.executable, str(ROOT / "bench" / "live_latency.py"), "--sources", "8", "--defaults", "--seconds", str(seconds)]
    say(f"$ {' '.join(command[1:])}")
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=seconds + 300)
    last = (done.stdout.strip().splitlines() or [""])[-1]
    values = dict(re.findall(r"(\w+)=([-\w.]+)", last))
    if "p99_ms" not in values or "frame_ms" not in values:
        say(f"live_latency.py gave no result line (exit {done.returncode}): {done.stderr.strip()[-300:]}")
        return math.nan, math.nan
    say(f"live_latency.py: {last}")
    return float(values["p99_ms"]), float(values["frame_ms"])


# ---- main ------------------------------------------------------------------------------------


def cores() -> int:
    return len(os.sched_getaffinity(0))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-cameras", type=int, default=32, help="the most cameras tried (and RTSP mounts served)")
    parser.add_argument("--warmup", type=float, default=4.0, help="seconds after the first result left out")
    parser.add_argument("--seconds", type=float, default=15.0, help="the measured window of each run")
    parser.add_argument("--clip-seconds", type=int, default=30, help="length of the camera clip (longer than a run)")
    parser.add_argument("--skip-inference", action="store_true", help="streamer only (cameras_inference=0)")
    parser.add_argument("--live-latency-seconds", type=int, default=LIVE_LATENCY_SECONDS)
    parser.add_argument("--budget-ms", default=str(int(P99_LIMIT_MS)), help="streamer's latency_budget_ms ('auto': its default)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    missing = RtspClipServer.missing()
    if missing:
        sys.exit(missing)
    clip, model = clip_path(args.clip_seconds), yolov8n_320()
    budget = [] if args.budget_ms == "auto" else ["--latency-budget-ms", args.budget_ms]
    streamer = Contender("streamer", Path(sys.executable), PEERS / "density_streamer.py", model, clip, args, budget)
    contenders = [streamer]
    if not args.skip_inference:
        venv = venvs.ensure("inference")
        if venv.python is None:
            say(f"inference: no venv ({venv.error}); its side is left out")
        else:
            contenders.append(Contender("inference", venv.python, PEERS / "density_inference.py", model, clip, args))
    rows, found, decode, all_runs = [], {}, {}, []
    with RtspClipServer(clip, args.max_cameras) as server:
        urls = server.urls()
        decode["streamer, no skipping"] = streamer.decode_cpu(urls[:DECODE_CAMERAS], "--no-skip")
        for contender in contenders:
            decode[contender.tool] = contender.decode_cpu(urls[:DECODE_CAMERAS])
        searched = search_in_turn(contenders, urls)
    for contender in contenders:
        found[contender.tool], runs = searched[contender.tool]
        all_runs += runs
        rows += [row(run, decode[contender.tool]) for run in sorted(runs, key=lambda run: run.cameras)]
    p99_at_8, frame_ms = live_latency(args.live_latency_seconds)
    print(f"Density: 1080p30 H.264 RTSP cameras (GOP {GOP / FPS:.0f} s, no B-frames), max_fps {MAX_FPS:g}, YOLOv8n at 320; "
          f"a run passes with every camera >= {FPS_SHARE:.0%} of {MAX_FPS:g} fps and p99 <= {P99_LIMIT_MS:.0f} ms; "
          f"streamer's latency_budget_ms {args.budget_ms}")
    print(render(rows))
    print("decode CPU per camera (ms/s, 2 cameras read with no model): "
          + ", ".join(f"{name} {value:.0f}" for name, value in decode.items()))
    skipped = [(run.skipped, run.over) for run in all_runs if run.tool == "streamer" and run.over]
    if skipped:
        print(f"streamer left {sum(s for s, _ in skipped)} of the {sum(o for _, o in skipped)} frames max_fps dropped undecoded "
              f"({sum(s for s, _ in skipped) / sum(o for _, o in skipped):.0%}; the GOP tails)")
    singles = [run for run in all_runs if run.cameras == 1 and run.cpu_ms_per_s > 0]
    if singles:
        print("cameras the cores would hold at one camera's CPU cost (cores x 1000 / CPU ms/s per camera, a check on a "
              "busy machine): " + ", ".join(f"{run.tool} {cores() * 1000 / run.cpu_ms_per_s:.1f}" for run in singles))
    print(f"machine: {cores()} cores; load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    n, m = found.get("streamer", 0), found.get("inference", 0)
    ratio = n / m if m else math.nan
    print(f"cameras_streamer={n} cameras_inference={m} ratio={ratio:.2f} p99_ms_at_8={p99_at_8:.1f} frame_ms={frame_ms:.1f}")


if __name__ == "__main__":
    main()
