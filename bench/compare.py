"""Compare: streamer against a naive loop, Ultralytics and Roboflow `inference`, on one model and one clip.

The model is the YOLOv8n export at imgsz 320 that ships in the nudenet wheel (`nudenet/320n.onnx`);
the clip is bench/throughput.py's generated 1080p H.264 zoom over the astronaut photo (30 fps, with
grain). Four contenders, each run as a process of its own (so CPU time and peak RSS are its alone):

naive        bench/throughput.py's single-threaded loop: PyAV decode -> PIL letterbox -> a default
             ONNX Runtime session -> the model's output decoding (bench/peers/naive_runner.py).
streamer     the real CLI, `python -m streamer run <generated TOML>`: the sources, the ONNX file as
             model id, a JSONL sink, and a callback sink that measures (bench/peers/streamer_hook.py).
ultralytics  `YOLO("<file>.onnx").predict(source, stream=True)`, in its own venv (bench/.venvs/).
inference    Roboflow's InferencePipeline with custom logic running the same ONNX file through an
             ONNX Runtime session, in its own venv. Peer venvs are built on first use (minutes).

Variants (`--variants`):
file     one clip of `--frames` frames, read as fast as it decodes.
file x4  four sources over one clip of `--multi-frames` frames (the naive loop reads one source only).
live     `--live-streams` RTSP streams of the clip, served in real time as cameras would (H.264 passed
         through by bench/peers/rtsp_clip_server.py, GStreamer), read for `--seconds`.

Measured in each run: fps = frames / (model loaded -> last result); CPU ms per frame over the same
window (user + system, every thread, getrusage in the contender's process); peak RSS of the whole
process (wait4). Live: latency = result in the contender's hands - the frame's capture wall time
(streamer: `frame.wall_time`; inference: `frame_timestamp`; naive: when PyAV hands the frame over;
Ultralytics records none), p50/p99 over results after `--warmup` s, pooled over runs. Contenders run
one after the other, round-robin (ABCD ABCD ...), `--repeat` rounds per variant; medians reported.

Scaling: 1, 2, 4, 8 (`--scaling`) live lavfi `testsrc2` sources of `--scaling-size` at 15 fps each
through streamer's Python API (`streamer.open`, bench/peers/scaling_runner.py), same model, for
`--scaling-seconds`: frames processed, dropped, latency p99, peak RSS per source.

The last line printed is, for the `file` variant, exactly:

    streamer_fps=<a> naive_fps=<b> ultralytics_fps=<c> inference_fps=<d> vs_best_peer=<a/max(c,d)>

(0 for a contender that did not run; vs_best_peer over the peers that ran, nan if none).

Run from the project root:  python bench/compare.py [--write-docs] [--repeat 3] [--frames 450] [--seconds 15]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/compare.py` from the project root
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.peers import venvs  # noqa: E402
from bench.peers.measure import MARKER  # noqa: E402
from bench.live_latency import parse_size  # noqa: E402
from bench.throughput import CASES, FPS, HEADLINE, clip_path, usable_cores, yolov8n_320  # noqa: E402

PEERS_DIR = ROOT / "bench" / "peers"
DOCS, CHART = ROOT / "docs" / "benchmarks.md", ROOT / "docs" / "benchmarks.png"
CONTENDERS = ("naive", "streamer", "ultralytics", "inference")
VARIANTS = ("file", "file x4", "live")
MULTI_STREAMS = 4
SCALING_FPS = 15
RUN_TIMEOUT_S = 600  # a file run; a live one gets its --seconds plus LIVE_GRACE_S
LIVE_GRACE_S = 120  # start-up (imports, model load) and shutdown
RTSP_SERVER = PEERS_DIR / "rtsp_clip_server.py"
SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's, with GStreamer's `gi`
RTSP_PACKAGES = "python3-gst-1.0 gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good"


# ---- settings --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """One way of feeding the contenders: these sources, live or not."""

    name: str
    sources: tuple[str, ...]
    live: bool = False


@dataclass(frozen=True)
class Streamer:
    """Streamer's settings under test (its defaults on this machine unless changed)."""

    batch: int
    max_wait_ms: float
    workers: int
    threads: int
    input_size: tuple[int, int] | None = None  # width, height; None: the model's own


# ---- running one process ---------------------------------------------------------------------


@dataclass
class Outcome:
    """One run of one contender on one variant, or why it did not run."""

    contender: str
    variant: str
    frames: int = 0
    wall_s: float = math.nan
    cpu_s: float = math.nan
    peak_rss_mb: float = math.nan
    latencies_ms: list[float] = field(default_factory=list)
    dropped: int | None = None
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.frames else math.nan

    @property
    def cpu_ms_per_frame(self) -> float:
        return 1000 * self.cpu_s / self.frames if self.frames else math.nan


@dataclass(frozen=True)
class Finished:
    """What a child process left: its stdout, the tail of its stderr, exit code and peak RSS."""

    stdout: str
    stderr_tail: str
    returncode: int
    peak_rss_mb: float


def run_process(command: list[str], env: dict[str, str], timeout_s: float = RUN_TIMEOUT_S) -> Finished:
    """Run `command` from the project root; its rusage comes from wait4, so peak RSS is its own."""
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=stderr)
        killer = threading.Timer(timeout_s, process.kill)
        killer.start()
        try:
            stdout = process.stdout.read().decode(errors="replace")  # type: ignore[union-attr]
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            killer.cancel()
            process.stdout.close()  # type: ignore[union-attr]
        process.returncode = os.waitstatus_to_exitcode(status)
        stderr.seek(0)
        tail = stderr.read().decode(errors="replace").strip().splitlines()[-15:]
    return Finished(stdout, "\n".join(tail), process.returncode, usage.ru_maxrss / 1024)


def measurements(finished: Finished) -> dict[str, Any]:
    """The runner's `BENCH_RESULT` line, or an error naming why there is none."""
    lines = [line for line in finished.stdout.splitlines() if line.startswith(MARKER)]
    if lines:
        return json.loads(lines[-1][len(MARKER) :])
    if finished.returncode < 0:
        raise RuntimeError(f"killed by {signal.Signals(-finished.returncode).name} (over its time limit?)")
    last = (finished.stderr_tail or finished.stdout).strip().splitlines()[-1:] or ["no output"]
    raise RuntimeError(f"exit code {finished.returncode}: {last[0][:200]}")


# ---- the contenders --------------------------------------------------------------------------


class Contender:
    """How to start one contender on a variant; subclasses say what command and environment."""

    name = ""

    def __init__(self, model: str, scratch: Path, warmup_s: float) -> None:
        self.model, self.scratch, self.warmup_s = model, scratch, warmup_s

    def unavailable(self, variant: Variant) -> str | None:
        """Why this contender cannot run `variant` (None: it can)."""
        return None

    def command(self, variant: Variant, seconds: float) -> list[str]:
        raise NotImplementedError

    def environment(self, variant: Variant, seconds: float) -> dict[str, str]:
        return {**os.environ, "OPENCV_FFMPEG_CAPTURE_OPTIONS": "rtsp_transport;tcp", "PYTHONUNBUFFERED": "1"}

    def runner_arguments(self, variant: Variant, seconds: float) -> list[str]:
        live = ["--live", "--seconds", f"{seconds:g}"] if variant.live else []
        return ["--model", self.model, "--sources", *variant.sources, *live]

    def run(self, variant: Variant, seconds: float) -> Outcome:
        why = self.unavailable(variant)
        if why:
            return Outcome(self.name, variant.name, error=why)
        limit = seconds + LIVE_GRACE_S if variant.live else RUN_TIMEOUT_S
        finished = run_process(self.command(variant, seconds), self.environment(variant, seconds), limit)
        try:
            found = measurements(finished)
        except RuntimeError as exc:
            return Outcome(self.name, variant.name, error=f"run failed: {exc}")
        return self.outcome(variant, found, finished)

    def outcome(self, variant: Variant, found: dict[str, Any], finished: Finished) -> Outcome:
        latencies = [ms for ms, at in zip(found["latencies_ms"], found["arrivals_s"]) if at >= self.warmup_s]
        details = {key: found[key] for key in ("versions", "input_shape", "note") if key in found}
        return Outcome(self.name, variant.name, found["frames"], found["wall_s"], found["cpu_s"],
                       finished.peak_rss_mb, latencies, found.get("dropped"), details)


class Naive(Contender):
    name = "naive"

    def unavailable(self, variant: Variant) -> str | None:
        return "n/a: a single-threaded loop reads one source" if len(variant.sources) > 1 else None

    def command(self, variant: Variant, seconds: float) -> list[str]:
        return [sys.executable, str(PEERS_DIR / "naive_runner.py"), *self.runner_arguments(variant, seconds)]


class StreamerCli(Contender):
    name = "streamer"
    SOURCE_LINE = re.compile(r"^source \S+: (\d+) frames, (\d+) dropped, (\d+) stale", re.MULTILINE)

    def __init__(self, model: str, scratch: Path, warmup_s: float, knobs: Streamer) -> None:
        super().__init__(model, scratch, warmup_s)
        self.knobs = knobs

    def command(self, variant: Variant, seconds: float) -> list[str]:
        path = self.scratch / f"streamer-{variant.name.replace(' ', '')}.toml"
        path.write_text(streamer_toml(self.model, variant, self.knobs, self.scratch / "results.jsonl"))
        return [sys.executable, "-m", "streamer", "run", str(path)]

    def environment(self, variant: Variant, seconds: float) -> dict[str, str]:
        live = {"STREAMER_BENCH_LIVE": "1", "STREAMER_BENCH_SECONDS": f"{seconds:g}"} if variant.live else {}
        return {**super().environment(variant, seconds), **live}

    def outcome(self, variant: Variant, found: dict[str, Any], finished: Finished) -> Outcome:
        result = super().outcome(variant, found, finished)
        counts = [tuple(map(int, match)) for match in self.SOURCE_LINE.findall(finished.stdout)]
        result.dropped = sum(dropped + stale for _, dropped, stale in counts)
        if not variant.live:
            check_jsonl(self.scratch / "results.jsonl", result.frames)
        return result


class Peer(Contender):
    """A contender living in its own venv; `venv.error` says why it cannot run at all."""

    def __init__(self, name: str, venv: venvs.Venv, model: str, scratch: Path, warmup_s: float) -> None:
        super().__init__(model, scratch, warmup_s)
        self.name, self.venv = name, venv

    def unavailable(self, variant: Variant) -> str | None:
        return f"not run: {self.venv.error}" if self.venv.error else None

    def command(self, variant: Variant, seconds: float) -> list[str]:
        runner = PEERS_DIR / f"{self.name}_runner.py"
        return [str(self.venv.python), str(runner), *self.runner_arguments(variant, seconds)]

    def environment(self, variant: Variant, seconds: float) -> dict[str, str]:
        quiet = {"YOLO_OFFLINE": "1", "YOLO_VERBOSE": "False", "YOLO_CONFIG_DIR": str(venvs.VENVS / self.name / "config")}
        return {**super().environment(variant, seconds), **quiet}


def streamer_toml(model: str, variant: Variant, knobs: Streamer, jsonl: Path) -> str:
    """The config `streamer run` gets: the variant's sources, the model, a JSONL and a measuring sink."""
    lines = ["[model]", f"id = {json.dumps(model)}", f"workers = {knobs.workers}", f"threads = {knobs.threads}"]
    lines += [f"input_size = {list(knobs.input_size)}"] if knobs.input_size else []
    lines += [""]
    lines += ["[batching]", f"max_batch_size = {knobs.batch}", f"max_wait_ms = {knobs.max_wait_ms:g}", ""]
    for index, source in enumerate(variant.sources):
        lines += ["[[sources]]", f'id = "s{index}"']
        if variant.live:
            lines += ['type = "rtsp"', f"url = {json.dumps(source)}", 'transport = "tcp"', ""]
        else:
            lines += ['type = "file"', f"path = {json.dumps(source)}", ""]
    lines += ["[[sinks]]", 'type = "jsonl"', f"path = {json.dumps(str(jsonl))}", ""]
    lines += ["[[sinks]]", 'type = "callback"', 'function = "bench.peers.streamer_hook:on_result"', ""]
    return "\n".join(lines)


def check_jsonl(path: Path, frames: int) -> None:
    lines = len(path.read_bytes().splitlines()) if path.exists() else 0
    if lines != frames:
        raise RuntimeError(f"streamer reported {frames} results but wrote {lines} JSONL lines")


# ---- the RTSP server for the live variant ----------------------------------------------------


class RtspClipServer:
    """bench/peers/rtsp_clip_server.py under Debian's Python: /s0 .. /s<n-1>, each client its own playback."""

    def __init__(self, clip: Path, mounts: int) -> None:
        self.clip, self.mounts = clip, mounts
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    @staticmethod
    def missing() -> str | None:
        """Why the server cannot run here (None: it can)."""
        try:
            check = subprocess.run([SYSTEM_PYTHON, str(RTSP_SERVER), "--check"], capture_output=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"no GStreamer RTSP server ({exc}); apt-get install {RTSP_PACKAGES}"
        return None if check.returncode == 0 else f"no GStreamer RTSP server; apt-get install {RTSP_PACKAGES}"

    def urls(self) -> tuple[str, ...]:
        return tuple(f"rtsp://127.0.0.1:{self.port}/s{index}" for index in range(self.mounts))

    def __enter__(self) -> RtspClipServer:
        command = [SYSTEM_PYTHON, str(RTSP_SERVER), "--clip", str(self.clip), "--mounts", str(self.mounts)]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        words = self.process.stdout.readline().decode().split()  # type: ignore[union-attr]
        if len(words) != 2 or words[0] != "READY":
            self.__exit__()
            raise RuntimeError(f"the RTSP server did not start (said {' '.join(words)!r})")
        self.port = int(words[1])
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# ---- rounds ----------------------------------------------------------------------------------


def run_rounds(contenders: list[Contender], variant: Variant, repeat: int, seconds: float) -> list[Outcome]:
    """Every contender once per round, in order (ABCD ABCD ...)."""
    outcomes = []
    for round_number in range(1, repeat + 1):
        for contender in contenders:
            outcome = contender.run(variant, seconds)
            outcomes.append(outcome)
            say(f"{variant.name}: round {round_number}/{repeat}: {contender.name}: {describe_run(outcome)}")
    return outcomes


def describe_run(outcome: Outcome) -> str:
    if outcome.error:
        return outcome.error
    latency = f", p50 {percentile(outcome.latencies_ms, 50):.0f} ms" if outcome.latencies_ms else ""
    return f"{outcome.frames} frames, {outcome.fps:.1f} fps, {outcome.cpu_ms_per_frame:.1f} CPU ms/frame{latency}"


def live_variant(clip: Path, streams: int, repeat: int, seconds: float, contenders: list[Contender]) -> list[Outcome]:
    why = RtspClipServer.missing()
    if why:
        return [Outcome(contender.name, "live", error=f"not run: {why}") for contender in contenders]
    with RtspClipServer(clip, streams) as server:
        return run_rounds(contenders, Variant("live", server.urls(), live=True), repeat, seconds)


# ---- summaries -------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else math.nan


def median(values: Sequence[float]) -> float:
    finite = [value for value in values if not math.isnan(value)]
    return float(np.median(finite)) if finite else math.nan


@dataclass(frozen=True)
class Row:
    """A contender's runs on one variant, summarised."""

    contender: str
    variant: str
    runs: list[Outcome]

    @property
    def ran(self) -> list[Outcome]:
        return [run for run in self.runs if not run.error]

    @property
    def status(self) -> str:
        errors = [run.error for run in self.runs if run.error]
        if not errors:
            return "ok"
        return errors[0] if not self.ran else f"{len(errors)} of {len(self.runs)} runs failed: {errors[0]}"

    @property
    def fps(self) -> float:
        return median([run.fps for run in self.ran])

    @property
    def cpu_ms(self) -> float:
        return median([run.cpu_ms_per_frame for run in self.ran])

    @property
    def rss_mb(self) -> float:
        return median([run.peak_rss_mb for run in self.ran])

    @property
    def frames(self) -> float:
        return median([run.frames for run in self.ran])

    def latency(self, q: float) -> float:
        return percentile([ms for run in self.ran for ms in run.latencies_ms], q)

    @property
    def dropped(self) -> float:
        counts = [run.dropped for run in self.ran if run.dropped is not None]
        return median(counts) if counts else math.nan

    @property
    def input_shape(self) -> str:
        shapes = [run.details.get("input_shape") for run in self.ran if run.details.get("input_shape")]
        return "x".join(str(size) for size in shapes[0][2:]) if shapes else ""


def rows_for(outcomes: list[Outcome], variant: str) -> list[Row]:
    return [
        Row(name, variant, [o for o in outcomes if o.contender == name and o.variant == variant])
        for name in CONTENDERS
        if any(o.contender == name and o.variant == variant for o in outcomes)
    ]


# ---- tables ----------------------------------------------------------------------------------


Column = tuple[str, Callable[[Row], str]]


def number(value: float, digits: int = 1) -> str:
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"


def latency_cell(row: Row, q: float) -> str:
    if row.ran and not any(run.latencies_ms for run in row.ran):
        return "n/a (no capture time)"
    return number(row.latency(q))


THROUGHPUT_COLUMNS: list[Column] = [
    ("contender", lambda r: r.contender),
    ("frames/s", lambda r: number(r.fps)),
    ("CPU ms/frame", lambda r: number(r.cpu_ms)),
    ("peak RSS MB", lambda r: number(r.rss_mb, 0)),
    ("frames", lambda r: number(r.frames, 0)),
    ("input", lambda r: r.input_shape),
    ("status", lambda r: r.status),
]

LIVE_COLUMNS: list[Column] = [
    *THROUGHPUT_COLUMNS[:4],
    ("latency p50 ms", lambda r: latency_cell(r, 50) if r.ran else ""),
    ("latency p99 ms", lambda r: latency_cell(r, 99) if r.ran else ""),
    ("dropped", lambda r: number(r.dropped, 0) if r.ran else ""),
    *THROUGHPUT_COLUMNS[4:],
]


@dataclass(frozen=True)
class Scaled:
    """One scaling run: `sources` live patterns through streamer."""

    sources: int
    outcome: Outcome
    read: int


SCALING_COLUMNS: list[tuple[str, Callable[[Scaled], str]]] = [
    ("sources", lambda s: str(s.sources)),
    ("offered fps", lambda s: str(s.sources * SCALING_FPS)),
    ("processed", lambda s: str(s.outcome.frames) if not s.outcome.error else s.outcome.error),
    ("processed fps", lambda s: number(s.outcome.fps)),
    ("dropped", lambda s: number(float(s.outcome.dropped if s.outcome.dropped is not None else math.nan), 0)),
    ("latency p50 ms", lambda s: number(percentile(s.outcome.latencies_ms, 50))),
    ("latency p99 ms", lambda s: number(percentile(s.outcome.latencies_ms, 99))),
    ("peak RSS MB", lambda s: number(s.outcome.peak_rss_mb, 0)),
    ("RSS MB per source", lambda s: number(s.outcome.peak_rss_mb / s.sources, 0)),
]


def cells(items: Sequence[Any], columns: Sequence[tuple[str, Callable[[Any], str]]]) -> list[list[str]]:
    return [[name for name, _ in columns], *([cell(item) for _, cell in columns] for item in items)]


def text_table(table: list[list[str]]) -> str:
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))) for line in table)


def markdown_table(table: list[list[str]]) -> str:
    """Numeric columns (numbers and n/a only) right-aligned, others left."""
    header, *body = table
    numeric = [all(re.fullmatch(r"-?[\d.]+|n/a|", line[i]) for line in body) for i in range(len(header))]
    aligns = ["--:" if is_numeric and i else "---" for i, is_numeric in enumerate(numeric)]
    return "\n".join("| " + " | ".join(line) + " |" for line in [header, aligns, *body])


# ---- scaling ---------------------------------------------------------------------------------


def run_scaling(args: argparse.Namespace, model: str, knobs: Streamer) -> list[Scaled]:
    results = []
    for count in args.scaling:
        command = [sys.executable, str(PEERS_DIR / "scaling_runner.py"), "--model", model, "--sources", str(count)]
        command += ["--fps", str(SCALING_FPS), "--seconds", f"{args.scaling_seconds:g}", "--warmup", f"{args.warmup:g}"]
        command += ["--size", args.scaling_size, "--batch", str(knobs.batch), "--max-wait-ms", f"{knobs.max_wait_ms:g}"]
        command += ["--workers", str(knobs.workers), "--threads", str(knobs.threads)]
        finished = run_process(command, {**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            found = measurements(finished)
            outcome = Outcome("streamer", f"scaling {count}", found["frames"], found["wall_s"], found["cpu_s"],
                              finished.peak_rss_mb, found["latencies_ms"], found["dropped"])
            results.append(Scaled(count, outcome, found["read"]))
        except RuntimeError as exc:
            results.append(Scaled(count, Outcome("streamer", f"scaling {count}", error=f"run failed: {exc}"), 0))
        say(f"scaling: {count} sources: {describe_run(results[-1].outcome)}")
    return results


# ---- the machine -----------------------------------------------------------------------------


def machine(load_before: tuple[float, ...]) -> dict[str, str]:
    cpu = next((line.split(":", 1)[1].strip() for line in read_lines("/proc/cpuinfo") if line.startswith("model name")), platform.processor())
    mem_kb = next((int(line.split()[1]) for line in read_lines("/proc/meminfo") if line.startswith("MemTotal")), 0)
    os_name = next((line.split("=", 1)[1].strip('"') for line in read_lines("/etc/os-release") if line.startswith("PRETTY_NAME")), platform.system())
    return {
        "CPU": cpu,
        "cores usable": str(usable_cores()),
        "RAM": f"{mem_kb / 1024**2:.1f} GiB",
        "OS": f"{os_name}, kernel {platform.release()}",
        "Python": platform.python_version(),
        "load average (1, 5, 15 min)": f"{format_load(load_before)} at the start, {format_load(os.getloadavg())} at the end",
    }


def format_load(load: tuple[float, ...]) -> str:
    return " / ".join(f"{value:.2f}" for value in load)


def read_lines(path: str) -> list[str]:
    try:
        return Path(path).read_text().splitlines()
    except OSError:
        return []


def streamer_env_versions() -> dict[str, str]:
    import importlib.metadata

    names = ("streamer", "onnxruntime", "av", "numpy", "pillow")
    return {name: importlib.metadata.version(name) for name in names}


# ---- the chart and the docs ------------------------------------------------------------------


def draw_chart(rows: dict[str, list[Row]], scaled: list[Scaled], path: Path) -> None:
    """Throughput per variant, live latency per contender, and scaling, side by side (matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, ((top_left, top_right), (bottom_left, bottom_right)) = plt.subplots(2, 2, figsize=(13, 9))
    throughput_panel(top_left, rows)
    cpu_panel(top_right, rows)
    latency_panel(bottom_left, rows.get("live", []))
    scaling_panel(bottom_right, scaled)
    figure.suptitle(f"YOLOv8n (320) on 1080p H.264, {usable_cores()} CPU cores", fontsize=12)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def throughput_panel(axes: Any, rows: dict[str, list[Row]]) -> None:
    grouped_bars(axes, rows, lambda row: row.fps)
    axes.set_ylabel("frames/s (all streams)")
    axes.set_title("Throughput (higher is better)")


def grouped_bars(axes: Any, rows: dict[str, list[Row]], value_of: Callable[[Row], float]) -> None:
    """One group of bars per variant, one bar per contender, each labelled with its value (or n/a)."""
    variants = [name for name in VARIANTS if rows.get(name)]
    width = 0.8 / len(CONTENDERS)
    for index, contender in enumerate(CONTENDERS):
        values = [next((value_of(r) for r in rows[v] if r.contender == contender), math.nan) for v in variants]
        heights = [0 if math.isnan(v) else v for v in values]
        bars = axes.bar([i + index * width for i in range(len(variants))], heights, width, label=contender)
        label_bars(axes, bars, values)
    axes.set_xticks([i + 0.4 - width / 2 for i in range(len(variants))], variants)
    axes.set_ylim(top=axes.get_ylim()[1] * 1.2)  # room for the legend above the bars
    axes.legend(fontsize=8, ncols=len(CONTENDERS), loc="upper center")


def label_bars(axes: Any, bars: Any, values: list[float]) -> None:
    for bar, value in zip(bars, values):
        label = "n/a" if math.isnan(value) else f"{value:.0f}"
        axes.annotate(label, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=7)


def cpu_panel(axes: Any, rows: dict[str, list[Row]]) -> None:
    grouped_bars(axes, rows, lambda row: row.cpu_ms)
    axes.set_ylabel("CPU ms per frame (all threads)")
    axes.set_title("CPU per frame (lower is better)")


def latency_panel(axes: Any, rows: list[Row]) -> None:
    names = [row.contender for row in rows]
    for offset, q in ((-0.2, 50), (0.2, 99)):
        values = [row.latency(q) for row in rows]
        bars = axes.bar([i + offset for i in range(len(rows))], [0 if math.isnan(v) else v for v in values], 0.4, label=f"p{q}")
        label_bars(axes, bars, values)
    axes.set_xticks(range(len(rows)), names)
    axes.set_ylabel("ms, capture -> result")
    axes.set_title("Live latency (lower is better)")
    axes.legend(fontsize=8)


def scaling_panel(axes: Any, scaled: list[Scaled]) -> None:
    ran = [s for s in scaled if not s.outcome.error]
    counts = [s.sources for s in ran]
    axes.plot(counts, [s.outcome.fps for s in ran], "o-", label="processed fps")
    axes.plot(counts, [s.sources * SCALING_FPS for s in ran], "k--", linewidth=0.8, label="offered fps")
    axes.set_xlabel("live sources (15 fps each)")
    axes.set_ylabel("frames/s")
    axes.set_xticks(counts or [1])
    twin = axes.twinx()
    twin.plot(counts, [percentile(s.outcome.latencies_ms, 99) for s in ran], "s-", color="tab:red", label="latency p99")
    twin.set_ylabel("latency p99 ms", color="tab:red")
    axes.set_title("streamer scaling")
    lines = axes.get_legend_handles_labels(), twin.get_legend_handles_labels()
    axes.legend(lines[0][0] + lines[1][0], lines[0][1] + lines[1][1], fontsize=8, loc="upper left")


def versions_table(peers: dict[str, venvs.Venv]) -> list[list[str]]:
    table = [["environment", "versions"], ["streamer's", ", ".join(f"{k} {v}" for k, v in streamer_env_versions().items())]]
    for name, venv in peers.items():
        table.append([f"{name} venv", ", ".join(f"{k} {v}" for k, v in venv.versions.items()) or f"not built: {venv.error}"])
    return table


def notes(rows: dict[str, list[Row]], knobs: Streamer) -> list[str]:
    runs = [run for variant_rows in rows.values() for row in variant_rows for run in row.ran]
    standin = sorted({run.details["note"] for run in runs if run.details.get("note")})
    users = sorted({run.contender for run in runs if run.details.get("note")})
    shapes = sorted({f"{row.contender}: {row.input_shape}" for variant_rows in rows.values() for row in variant_rows if row.input_shape})
    lines = [
        f"Threads: streamer runs {knobs.workers} inference workers x {knobs.threads} ONNX Runtime thread, batches of up to "
        f"{knobs.batch} (max_wait_ms {knobs.max_wait_ms:g}), decoding in its source threads (FFmpeg `thread_type` AUTO). "
        "The naive loop, Ultralytics and inference use ONNX Runtime's default session options (intra-op threads = cores); "
        "all contenders share the same machine and nothing else is pinned.",
        "Model input as each contender letterboxes it (height x width): " + "; ".join(shapes) + ". Ultralytics pads a 16:9 "
        "frame only to the next multiple of the stride (rect inference, since the export has dynamic axes); the others use the "
        "export's square 320 x 320.",
        "fps = frames / (model loaded -> last result), measured inside each contender's process; start-up and model loading "
        "are left out for every contender. Ultralytics and inference run one warm-up inference before the window opens; "
        "streamer's window opens when its sinks are built, right after the model loads, and the naive loop's once its "
        "session exists, so their first (slower) inference counts. CPU ms/frame: user + system CPU of the whole process "
        "over the same window.",
        "Live latency = result in the contender's hands - the frame's capture time. Streamer and the naive loop: on the "
        "stream's clock (earliest arrival - pts, + the frame's pts), so a frame that waited to be read counts as waiting; "
        "inference: its `frame_timestamp`, taken by its reader thread as it grabs the frame; Ultralytics' LoadStreams "
        "records no capture time (n/a). The naive loop reads every frame (no dropping), so when it is slower than the "
        "stream its latency grows for as long as the run lasts.",
        "Other work may share the machine (see the load average above): then CPU ms/frame is the steadier comparison; "
        "on idle cores frames/s is at most about cores x 1000 / CPU ms.",
    ]
    lines += [f"{' and '.join(users)}: {note}; PyPI has only CUDA builds of torchvision, see "
              "bench/peers/torchvision_standin.py" for note in standin]
    return lines


def render_docs(args: argparse.Namespace, command: str, rows: dict[str, list[Row]], scaled: list[Scaled],
                peers: dict[str, venvs.Venv], knobs: Streamer, load_before: tuple[float, ...], headline_line: str) -> str:
    parts = [
        "# Benchmarks: streamer, a naive loop, Ultralytics and Roboflow inference",
        "",
        "Generated by `bench/compare.py --write-docs` from the numbers of one run; do not edit by hand. "
        "What is measured and how: the docstring of `bench/compare.py` and `bench/README.md`.",
        "",
        "## Reproduce",
        "",
        "```",
        command,
        "```",
        "",
        f"Settings of this run: rounds per variant (medians): {args.repeat}; file: {args.frames} frames; "
        f"file x4: {MULTI_STREAMS} x {args.multi_frames} frames; live: {args.live_streams} RTSP stream(s) for {args.seconds:g} s "
        f"(latency after {args.warmup:g} s); scaling: {args.scaling_seconds:g} s per step at {args.scaling_size}.",
        "",
        "## Machine",
        "",
        markdown_table([["", "this run"], *[[k, v] for k, v in machine(load_before).items()]]),
        "",
        markdown_table(versions_table(peers)),
        "",
        "![throughput, live latency and scaling](benchmarks.png)",
        "",
    ]
    titles = {
        "file": f"## One 1080p clip, as fast as it decodes ({args.frames} frames)",
        "file x4": f"## Four sources over the clip, as fast as they decode ({MULTI_STREAMS} x {args.multi_frames} frames)",
        "live": f"## Live: {args.live_streams} RTSP stream(s) of the clip in real time (30 fps each), {args.seconds:g} s",
    }
    for variant in VARIANTS:
        if rows.get(variant):
            columns = LIVE_COLUMNS if variant == "live" else THROUGHPUT_COLUMNS
            parts += [titles[variant], "", markdown_table(cells(rows[variant], columns)), ""]
    if scaled:
        parts += [f"## Scaling: streamer with 1-{max(args.scaling)} live lavfi sources at {SCALING_FPS} fps each", "",
                  f"`testsrc2` at {args.scaling_size}, the same YOLOv8n model, through `streamer.open` with a callback sink; "
                  "dropped counts frames a source read that never reached the model (queue overflow under policy `latest`, or stale).",
                  "", markdown_table(cells(scaled, SCALING_COLUMNS)), ""]
    parts += ["## Notes", "", *[f"- {line}" for line in notes(rows, knobs)], "", "Headline (the script's last line):", "",
              "```", headline_line, "```", ""]
    return "\n".join(parts)


# ---- the headline ----------------------------------------------------------------------------


def headline(rows: list[Row]) -> str:
    fps = {row.contender: row.fps for row in rows}
    value = {name: 0.0 if math.isnan(fps.get(name, math.nan)) else fps[name] for name in CONTENDERS}
    peers = [value[name] for name in ("ultralytics", "inference") if value[name] > 0]
    ratio = value["streamer"] / max(peers) if peers else math.nan
    return (
        f"streamer_fps={value['streamer']:.2f} naive_fps={value['naive']:.2f} ultralytics_fps={value['ultralytics']:.2f} "
        f"inference_fps={value['inference']:.2f} vs_best_peer={ratio:.2f}"
    )


# ---- main ------------------------------------------------------------------------------------


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=450, help="frames of the single-clip variant (30 fps)")
    parser.add_argument("--multi-frames", type=int, default=150, help=f"frames of the clip each of the {MULTI_STREAMS} sources reads")
    parser.add_argument("--repeat", type=int, default=3, help="rounds per variant (each contender once per round)")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each live run")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of live results left out of latency")
    parser.add_argument("--live-streams", type=int, default=1, help="RTSP streams in the live variant")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, from: {', '.join(VARIANTS)}")
    parser.add_argument("--contenders", default=",".join(CONTENDERS), help=f"comma-separated, from: {', '.join(CONTENDERS)}")
    parser.add_argument("--scaling", default="1,2,4,8", help="live source counts for the scaling table ('' to skip)")
    parser.add_argument("--scaling-seconds", type=float, default=20.0, help="length of each scaling run")
    parser.add_argument("--scaling-size", default="1280x720", help="lavfi pattern size in the scaling table")
    parser.add_argument("--batch", type=int, default=4, help="streamer max_batch_size")
    parser.add_argument("--max-wait-ms", type=float, default=10.0, help="streamer max_wait_ms")
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="streamer workers (default: its own)")
    parser.add_argument("--threads", type=int, default=1, help="streamer ONNX Runtime threads per worker")
    parser.add_argument("--input-size", type=parse_size, default=None, help="streamer model.input_size, WIDTHxHEIGHT (default: the model's 320x320)")
    parser.add_argument("--reinstall", action="store_true", help="rebuild the peers' venvs")
    parser.add_argument("--write-docs", action="store_true", help=f"write {DOCS.relative_to(ROOT)} and {CHART.relative_to(ROOT)}")
    args = parser.parse_args(argv)
    args.variants = chosen(parser, args.variants, VARIANTS, "variant")
    args.contenders = chosen(parser, args.contenders, CONTENDERS, "contender")
    args.scaling = [int(count) for count in args.scaling.split(",") if count.strip()]
    if args.seconds <= args.warmup:
        parser.error("--seconds must be longer than --warmup")
    return args


def chosen(parser: argparse.ArgumentParser, text: str, allowed: Sequence[str], what: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = sorted(set(names) - set(allowed))
    if unknown:
        parser.error(f"unknown {what}(s) {', '.join(unknown)}; choose from {', '.join(allowed)}")
    return [name for name in allowed if name in names]


def build_contenders(args: argparse.Namespace, model: str, scratch: Path, knobs: Streamer) -> tuple[list[Contender], dict[str, venvs.Venv]]:
    peers = {name: venvs.ensure(name, args.reinstall) for name in ("ultralytics", "inference") if name in args.contenders}
    for name, venv in peers.items():
        say(f"{name}: {'venv ready' if not venv.error else 'not available: ' + venv.error}")
    everyone: dict[str, Contender] = {
        "naive": Naive(model, scratch, args.warmup),
        "streamer": StreamerCli(model, scratch, args.warmup, knobs),
        **{name: Peer(name, venv, model, scratch, args.warmup) for name, venv in peers.items()},
    }
    return [everyone[name] for name in args.contenders], peers


def run_variants(args: argparse.Namespace, contenders: list[Contender]) -> list[Outcome]:
    case, outcomes = CASES[HEADLINE], []
    if "file" in args.variants:
        clip = str(clip_path(case, args.frames))
        outcomes += run_rounds(contenders, Variant("file", (clip,)), args.repeat, args.seconds)
    if "file x4" in args.variants:
        clip = str(clip_path(case, args.multi_frames))
        outcomes += run_rounds(contenders, Variant("file x4", (clip,) * MULTI_STREAMS), args.repeat, args.seconds)
    if "live" in args.variants:
        live_frames = max(args.frames, math.ceil((args.seconds + 10) * FPS))  # outlasts the run and the start-up
        outcomes += live_variant(clip_path(case, live_frames), args.live_streams, args.repeat, args.seconds, contenders)
    return outcomes


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    command = "python bench/compare.py " + " ".join(shlex.quote(arg) for arg in (sys.argv[1:] if argv is None else argv))
    knobs = Streamer(args.batch, args.max_wait_ms, args.workers, args.threads, args.input_size)
    model, load_before = yolov8n_320(), os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="streamer-compare-") as scratch:
        contenders, peers = build_contenders(args, model, Path(scratch), knobs)
        outcomes = run_variants(args, contenders)
    scaled = run_scaling(args, model, knobs)
    rows = {variant: rows_for(outcomes, variant) for variant in VARIANTS if rows_for(outcomes, variant)}
    for variant, variant_rows in rows.items():
        print(f"== {variant} ==")
        print(text_table(cells(variant_rows, LIVE_COLUMNS if variant == "live" else THROUGHPUT_COLUMNS)))
    if scaled:
        print(f"== scaling: live lavfi sources at {SCALING_FPS} fps each ==")
        print(text_table(cells(scaled, SCALING_COLUMNS)))
    last = headline(rows.get("file", []))
    if args.write_docs:
        draw_chart(rows, scaled, CHART)
        DOCS.write_text(render_docs(args, command, rows, scaled, peers, knobs, load_before, last))
        say(f"wrote {DOCS.relative_to(ROOT)} and {CHART.relative_to(ROOT)}")
    print(last)


if __name__ == "__main__":
    main()
