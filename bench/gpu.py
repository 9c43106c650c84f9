"""GPU throughput: how many live 1080p30 streams one GPU keeps up with, and where the time goes.

The model is a YOLOv8n-class detector, the YOLOv8n export that ships in the nudenet wheel
(`nudenet/320n.onnx`, dynamic batch, height and width), run at `--input` (default 640): each batch is
letterboxed into the smallest stride-aligned size within `--input` x `--input` that its frames need
(`fit_to_frames`; 640 x 384 for 1080p), as Ultralytics' own predictor does; `--square` feeds the
full square instead.
`--backend torch` (default) runs it on PyTorch: the ONNX file is converted once by
`streamer.engine.convert` into a local-folder package (`--format`, TorchScript by default), cached in
bench/.cache/models; `--half` picks its fp16 package (the torch backend halves the module as it
loads it). `--backend onnxruntime` runs the ONNX file itself (on a GPU this needs onnxruntime-gpu).
On a CUDA device with CuPy installed, the model letterboxes on the GPU.

One run measures:

breakdown  each step alone on the loaded model, on real decoded 1080p frames, in batches of `--batch`,
           the way `DetectionModel._detect_batch` runs them (medians over `--runs` batches after a warm-up):
           decode   streamer's own file source (PyAV, thread_type AUTO, `--hwaccel` when given) decoding
                    the clip alone: wall and CPU ms per frame (CPU time counts every FFmpeg thread);
           stage    the decoded planes copied into the input buffer's pinned host staging memory,
           upload   one host-to-device copy, and
           preprocess  the letterbox (resample, YUV -> RGB, normalise) on the device: these three from the
                    model's own input buffers, `fill(frames, timings)`, which synchronises after each step
                    (on the CPU path the whole fill, FFmpeg scaling included, is preprocess);
           infer    `backend.run` on the device batch: GPU-side ms from CUDA events around it (torch on
                    CUDA), otherwise wall ms (ONNX Runtime returns host outputs, so it is synchronous);
                    the wall ms as the calling thread sees it is listed too;
           download the raw outputs copied to the host, for families that decode there (YOLO decodes
                    on the device: its postprocess brings back only the kept boxes);
           postprocess  `model.decode` (confidence filter, NMS, boxes back to source pixels);
           detect   one whole `model.detect(batch)` call, unsynchronised steps, for comparison.
streams    for each N in `--streams`: N file sources on a generated 1080p30 H.264 clip (bench/throughput.py's
           zoom over the astronaut photo with grain, about 9 Mbit/s), looping, paced to real time, policy
           `latest` and queue_size 2 as live cameras are (a stream that falls behind drops frames instead
           of lagging), through the real pipeline (`streamer.open` with `[batching] max_batch_size =
           --batch`, `max_wait_ms`). From `--warmup` s on, results are counted per source for `--seconds`
           s (iterating the stream). A stream sustains 30 fps when it delivered >= 97% of its 30 x seconds
           frames. streams_30fps is the largest N at which every stream did; stepping stops after the
           first N that fails. Decoding runs on the CPU (every source in its own thread, FFmpeg threads
           inside) unless `--hwaccel cuda` asks FFmpeg for NVDEC (the frames still come back to host
           memory; the breakdown's decode row names their pixel format).

checks     what the device path must get right before any figure counts (bench/gpu_checks.py says
           how each is measured): races (detections with 4 workers at once against 1 worker's),
           the letterbox against the CPU path (in 8-bit levels), NVDEC frames as nv12 at a 16-core
           machine's decode threads, a TensorRT plan built and run, and GPU memory per stream after
           each streams run (the 32-64 stream runs are the ones that matter).

Then `throughput: ... fps=<f> batch=<b> infer_ms=<i>` (fps: total results/s at streams_30fps, or at
the largest N tried when none passed; infer_ms: the breakdown's GPU-side ms per batch of `--batch`),
and last, exactly:

    device=<name> streams_30fps=<n> races=<0|n> letterbox_max_diff=<x> nvdec=<yes|no> trt=<ok|error|n/a>

On the CPU it runs too and says so: nvdec=no (no NVDEC), trt=n/a (TensorRT needs a GPU), the
letterbox figure is the NumPy device path's. With the defaults a GPU run takes about 5 minutes (well
under 10): model conversion and load, a TensorRT build (about a minute, cached after), the checks,
then up to five 20 s stream runs.

Run from the project root:

    python bench/gpu.py                                       # on a CUDA machine: 8..64 streams, 20 s each
    python bench/gpu.py --streams 32,40,48 --half --hwaccel   # fp16, NVDEC decoding
    python bench/gpu.py --device cpu --streams 1,2 --seconds 5 --warmup 3 --batch 4 --input 320  # a check
    python -m pytest -m gpu                                   # the gpu-marked tests (skipped without one)

On the lent GPU machine (Python 3.12, torch with CUDA and CuPy installed, no network), carry the
missing packages as wheels (see /work/.library/device/README.md; about 45 MB): here, in the
project root (`.whl/` is ignored by git),

    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .whl av==18.1.0 msgspec==0.22.0 onnx2torch==1.5.15 nudenet==3.4.2
    # and for trt=ok, where the machine has no TensorRT (about 1.5 GB, over the carry limit: without it trt=n/a)
    #   tensorrt-cu12==10.* (or 11.*) tensorrt-cu12-bindings tensorrt-cu12-libs

then run, carrying `.whl`:

    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl &&
    export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 && python3 bench/gpu.py 2>&1 | tee $OUT/gpu.log

Progress goes to stderr, results to stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/gpu.py` from the project root
    sys.path.insert(0, str(ROOT))

import anyio  # noqa: E402
import av  # noqa: E402
import numpy as np  # noqa: E402

import streamer  # noqa: E402
from bench.throughput import CACHE, CASES, FPS, HEADLINE, clip_path, yolov8n_320  # noqa: E402
from bench.throughput import process_cpu_seconds, usable_cores  # noqa: E402
from bench import gpu_checks  # noqa: E402
from streamer.config import Config, FileSourceConfig, load_config  # noqa: E402
from streamer.device import DeviceInputBuffers, to_host  # noqa: E402
from streamer.engine import DetectionModel  # noqa: E402
from streamer.frames import Frame, Result  # noqa: E402
from streamer.errors import StreamerError  # noqa: E402
from streamer.pipeline.observer import IgnoringObserver  # noqa: E402
from streamer.pipeline.runner import load_model  # noqa: E402
from streamer.sources import AvSource  # noqa: E402

MODELS = CACHE / "models"  # converted packages (streamer.engine.convert's cache layout)
SUSTAIN = 0.97  # share of a stream's 30 fps it must deliver
QUEUE_SIZE = 2  # per source, as for live cameras
WARM_BATCHES = 3  # untimed batches before the breakdown's timed ones
PARTS = ("stage", "upload", "preprocess", "infer", "download", "postprocess")


# ---- settings --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """What one run is asked to do."""

    device: str
    backend: str
    format: str
    half: bool
    input: int
    square: bool
    streams: tuple[int, ...]
    seconds: float
    warmup: float
    batch: int
    max_wait_ms: float
    workers: int | None
    threads: int
    queue_size: int
    hwaccel: str | None
    frames: int
    sample: int
    runs: int


# ---- the model -------------------------------------------------------------------------------


def torch_package(onnx_path: Path, format: str = "torchscript") -> Path:
    """The ONNX model converted to a local-folder PyTorch package, once (cached in bench/.cache/models)."""
    from streamer.engine.convert import convert_to_torch

    return convert_to_torch(onnx_path, format=format, cache_dir=MODELS)  # type: ignore[arg-type]


def model_id(settings: Settings) -> str:
    onnx = Path(yolov8n_320())
    if settings.backend == "onnxruntime":
        return str(onnx)
    say(f"{onnx.name} as a {settings.format} package (converted once, cached in {MODELS})")
    return str(torch_package(onnx, settings.format))


def model_table(settings: Settings, model: str) -> dict[str, Any]:
    """The `[model]` table: frames fitted within an input x input square (or filling it, `--square`)."""
    table: dict[str, Any] = {
        "id": model,
        "device": settings.device,
        "backend": settings.backend,
        "threads": settings.threads,
        "input_size": [settings.input, settings.input],
        "fit_to_frames": not settings.square,
    }
    if settings.backend == "torch":  # the package has both; on CUDA negotiation would pick fp16
        table["quantization"] = "fp16" if settings.half else "fp32"
    if settings.workers is not None:
        table["workers"] = settings.workers
    return table


def streams_config(settings: Settings, model: str, clip: Path, count: int) -> Config:
    """`count` live-like file sources on `clip` through `model`."""
    sources = [source_table(settings, clip, index) for index in range(count)]
    batching = {"max_batch_size": settings.batch, "max_wait_ms": settings.max_wait_ms}
    return load_config({"model": model_table(settings, model), "batching": batching, "sources": sources})


def source_table(settings: Settings, clip: Path, index: int) -> dict[str, Any]:
    table: dict[str, Any] = {
        "type": "file",
        "id": f"cam{index:03d}",
        "path": str(clip),
        "loop": True,
        "realtime": True,
        "policy": "latest",
        "queue_size": settings.queue_size,
    }
    if settings.hwaccel:
        table["hwaccel"] = settings.hwaccel
    return table


def model_device(model: DetectionModel) -> str:
    """"cpu" or "cuda:N": where the backend runs."""
    return getattr(model.backend, "input_device", "cpu")


def device_name(model: DetectionModel) -> str:
    device = model_device(model)
    if device == "cpu":
        return "cpu"
    index = int(device.partition(":")[2] or 0)
    try:
        import torch

        name = torch.cuda.get_device_name(index)
    except ImportError:
        import cupy

        name = cupy.cuda.runtime.getDeviceProperties(index)["name"].decode()
    return name.replace(" ", "-")


# ---- breakdown: each step alone --------------------------------------------------------------


@dataclass(frozen=True)
class Decoded:
    """Frames decoded as a source decodes them, and what that cost."""

    frames: list[av.VideoFrame]
    wall_ms: float  # per frame
    cpu_ms: float  # per frame, every FFmpeg thread counted
    how: str  # pixel format and decoder


def decode_sample(clip: Path, count: int, hwaccel: str | None) -> Decoded:
    """The clip's first `count` frames, decoded by streamer's own file source (thread_type AUTO; with
    `hwaccel`, FFmpeg's hardware decoder where it opens, else the CPU, as a source falls back)."""
    source = AvSource(FileSourceConfig(id="sample", path=str(clip), max_frames=count, hwaccel=hwaccel))
    wall, cpu = time.perf_counter(), process_cpu_seconds()
    frames = [item.decoded for item in source.frames(threading.Event()) if isinstance(item, Frame)]
    wall, cpu = time.perf_counter() - wall, process_cpu_seconds() - cpu
    decoder = f"hwaccel {source.hwaccel}" if source.hwaccel else "CPU"
    how = f"{frames[0].format.name}, {decoder}, every FFmpeg thread"
    return Decoded(frames, 1000 * wall / len(frames), 1000 * cpu / len(frames), how)  # type: ignore[misc]


def batch_frames(decoded: list[av.VideoFrame], number: int, size: int) -> list[Frame]:
    """Batch `number` of `size` fresh Frames over the decoded sample (fresh, so no RGB cache carries over)."""
    start = number * size
    chosen = [decoded[(start + i) % len(decoded)] for i in range(size)]
    return [Frame("sample", start + i, None, time.time(), decoded=frame) for i, frame in enumerate(chosen)]


Timer = Callable[[Callable[[], Any]], tuple[Any, float]]


def wall_timer(work: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    result = work()
    return result, time.perf_counter() - start


def cuda_event_timer(device: str) -> Timer:
    """Seconds between CUDA events recorded on torch's current stream around the work (GPU-side time)."""
    import torch

    stream = torch.cuda.current_stream(torch.device(device))

    def timed(work: Callable[[], Any]) -> tuple[Any, float]:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record(stream)
        result = work()
        end.record(stream)
        end.synchronize()
        return result, start.elapsed_time(end) / 1000

    return timed


def infer_timer(model: DetectionModel) -> tuple[str, Timer]:
    """How inference is timed: CUDA events for torch on a GPU, else the wall clock (a synchronous run)."""
    device = model_device(model)
    if device != "cpu" and model.backend.name.startswith("torch"):
        return "GPU-side, CUDA events", cuda_event_timer(device)
    return "wall clock", wall_timer


def synchronized(model: DetectionModel, work: Callable[[], Any]) -> Callable[[], Any]:
    """`work`, then a wait for everything queued on the model's GPU (nothing to wait for on the CPU)."""
    device = model_device(model)

    def run() -> Any:
        result = work()
        if device != "cpu":
            synchronize(int(device.partition(":")[2] or 0))
        return result

    return run


def synchronize(index: int) -> None:
    """Wait for every stream of CUDA device `index`."""
    try:
        import cupy
    except ImportError:
        import torch

        torch.cuda.synchronize(index)
        return
    cupy.cuda.Device(index).synchronize()


def fill(buffer: Any, is_device: bool, frames: list[Frame], seconds: dict[str, float]) -> tuple[Any, list[Any]]:
    """Letterbox into the model's own buffer; device buffers report stage/upload/preprocess themselves."""
    if is_device:
        return buffer.fill(frames, seconds)
    filled, seconds["preprocess"] = wall_timer(lambda: buffer.fill(frames))
    return filled


def time_batch(model: DetectionModel, frames: list[Frame], timer: Timer) -> dict[str, float]:
    """Seconds of each step of one batch, run as `_detect_batch` runs it, each step waited for."""
    seconds: dict[str, float] = {}
    buffers = model._buffers_for(frames)
    buffer = buffers.acquire()
    try:
        inputs, placements = fill(buffer, isinstance(buffers, DeviceInputBuffers), frames, seconds)
        outputs = timed_infer(model, inputs, timer, seconds)
    finally:
        buffers.release(buffer)
    if not model.decodes_on_device:
        outputs, seconds["download"] = wall_timer(lambda: [to_host(output) for output in outputs])
    _, seconds["postprocess"] = wall_timer(synchronized(model, lambda: model.decode(outputs, placements, frames)))
    return seconds


def timed_infer(model: DetectionModel, inputs: Any, timer: Timer, seconds: dict[str, float]) -> list[Any]:
    """`backend.run`: `timer`'s seconds as "infer", the calling thread's wall seconds as "infer_wall"."""
    start = time.perf_counter()
    outputs, seconds["infer"] = timer(lambda: model.backend.run(inputs))
    seconds["infer_wall"] = time.perf_counter() - start
    return outputs


@dataclass(frozen=True)
class Breakdown:
    decoded: Decoded
    batch: int
    infer_clock: str
    on_gpu: bool
    decodes_on_device: bool
    ms: dict[str, list[float]]  # per batch, one value per timed batch

    def median(self, part: str) -> float:
        values = self.ms.get(part)
        return statistics.median(values) if values else float("nan")

    @property
    def steps_ms(self) -> float:
        """Stage through postprocess, back to back (NaN parts, absent on this path, count 0)."""
        return sum(value for part in PARTS if (value := self.median(part)) == value)


def measure_breakdown(model: DetectionModel, decoded: Decoded, settings: Settings) -> Breakdown:
    clock, timer = infer_timer(model)
    ms: dict[str, list[float]] = defaultdict(list)
    for number in range(WARM_BATCHES + settings.runs):
        frames = batch_frames(decoded.frames, number, settings.batch)
        seconds = time_batch(model, frames, timer)
        _, seconds["detect"] = wall_timer(lambda: model.detect(batch_frames(decoded.frames, number, settings.batch)))
        if number >= WARM_BATCHES:
            for part, value in seconds.items():
                ms[part].append(1000 * value)
    on_gpu = model_device(model) != "cpu"
    return Breakdown(decoded, settings.batch, clock, on_gpu, model.decodes_on_device, dict(ms))


# ---- streams: N live-like sources through the pipeline ---------------------------------------


class Window(IgnoringObserver):
    """Counts results per source, their latency, and the model's batches, inside the timed window."""

    def __init__(self, source_ids: list[str], meter: Callable[[], int | None] = lambda: None) -> None:
        self.meter = meter
        self.gpu_bytes: int | None = None  # used on the GPU as the window closed
        self.delivered = dict.fromkeys(source_ids, 0)
        self.latencies_ms: list[float] = []
        self.batches: list[tuple[int, float]] = []  # (size, seconds of the detect call)
        self.open = False
        self.wall_s = 0.0
        self.cpu_s = 0.0

    async def time(self, warmup: float, seconds: float, done: anyio.CancelScope) -> None:
        """Open the window after the warm-up, close it `seconds` later, then end the run."""
        await anyio.sleep(warmup)
        self.open, wall, cpu = True, time.perf_counter(), process_cpu_seconds()
        await anyio.sleep(seconds)
        self.open, self.wall_s, self.cpu_s = False, time.perf_counter() - wall, process_cpu_seconds() - cpu
        self.gpu_bytes = self.meter()
        done.cancel()

    def record(self, result: Result) -> None:
        if self.open:
            self.delivered[result.source_id] += 1
            self.latencies_ms.append(1000 * (time.time() - result.frame.wall_time))

    def batch_done(self, size: int, seconds: float) -> None:
        if self.open:
            self.batches.append((size, seconds))


@dataclass(frozen=True)
class StreamsRun:
    """What N streams did in the timed window."""

    count: int
    window: Window
    read: int  # over the whole run, warm-up included
    lost: int  # dropped by `latest` or stale, over the whole run
    failed: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return self.window.wall_s

    @property
    def fps(self) -> float:
        return sum(self.window.delivered.values()) / self.seconds

    @property
    def stream_fps(self) -> list[float]:
        return [count / self.seconds for count in self.window.delivered.values()]

    @property
    def sustained(self) -> int:
        return sum(fps >= SUSTAIN * FPS for fps in self.stream_fps)

    @property
    def passed(self) -> bool:
        return self.sustained == self.count and not self.failed


def run_streams(settings: Settings, model: DetectionModel, config: Config) -> StreamsRun:
    meter = gpu_checks.gpu_memory_meter(model_device(model))
    window = Window([source.id for source in config.sources], meter)  # type: ignore[misc]

    async def pipeline() -> streamer.Summary:
        async with streamer.open(config, model=model, observers=[window]) as stream:
            async with anyio.create_task_group() as group:
                group.start_soon(window.time, settings.warmup, settings.seconds, group.cancel_scope)
                async for result in stream:
                    window.record(result)
        return stream.summary

    summary = anyio.run(pipeline)
    reports = summary.sources.values()
    failed = [f"{report.source_id}: {report.error}" for report in reports if report.error]
    lost = sum(report.dropped + report.stale for report in reports)
    return StreamsRun(len(config.sources), window, sum(report.read for report in reports), lost, failed)


def step_streams(settings: Settings, model: DetectionModel, model_ref: str, clip: Path) -> list[StreamsRun]:
    """Each N in turn until the first at which a stream does not sustain 30 fps."""
    runs: list[StreamsRun] = []
    for count in settings.streams:
        say(f"{count} streams: {settings.warmup:g} s warm-up, then {settings.seconds:g} s counted")
        runs.append(run_streams(settings, model, streams_config(settings, model_ref, clip, count)))
        say(f"{count} streams: {describe_run(runs[-1])}")
        for failure in runs[-1].failed:
            say(f"  source failed: {failure}")
        if not runs[-1].passed:
            break
    return runs


def memory_runs(settings: Settings, model: DetectionModel, model_ref: str, clip: Path, done: set[int]) -> list[StreamsRun]:
    """Short runs at the MEMORY_STREAMS counts the stepping did not reach, for the memory table only
    (on a GPU; their fps are not the streams figure)."""
    if model_device(model) == "cpu":
        return []
    short = dataclasses.replace(settings, seconds=2.0, warmup=3.0)
    runs = []
    for count in (count for count in gpu_checks.MEMORY_STREAMS if count not in done):
        say(f"{count} streams, for GPU memory only: {short.warmup:g} s, then {short.seconds:g} s")
        runs.append(run_streams(short, model, streams_config(short, model_ref, clip, count)))
    return runs


def describe_run(run: StreamsRun) -> str:
    verdict = "every stream sustained 30 fps" if run.passed else f"{run.count - run.sustained} stream(s) fell short"
    return f"{run.fps:.1f} results/s, slowest stream {min(run.stream_fps):.2f} fps: {verdict}"


def headline_run(runs: list[StreamsRun]) -> StreamsRun:
    """The largest N that passed, else the largest N tried."""
    passed = [run for run in runs if run.passed]
    return passed[-1] if passed else runs[-1]


# ---- tables, headline ------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")


def cell(value: float, digits: int = 2) -> str:
    return "-" if value != value else f"{value:.{digits}f}"  # NaN: not on this path


def render(columns: Sequence[tuple[str, int]], rows: Sequence[Sequence[str]]) -> str:
    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, (_, w)) in enumerate(zip(cells, columns)))

    return "\n".join([line([name for name, _ in columns]), *(line(row) for row in rows)])


BREAKDOWN_COLUMNS = [("part", 22), ("ms/batch", 9), ("ms/frame", 9), ("", 0)]
BREAKDOWN_NOTES = {
    "stage": "host: decoded planes into pinned staging",
    "upload": "host -> device, one copy",
    "preprocess": "letterbox, YUV -> RGB, normalise",
    "download": "outputs device -> host",
    "postprocess": "model.decode: filter, NMS, boxes",
}


def breakdown_rows(result: Breakdown) -> list[list[str]]:
    b, decoded = result.batch, result.decoded
    rows = [
        batch_row("decode (CPU time)", decoded.cpu_ms * b, b, decoded.how),
        batch_row("decode (wall)", decoded.wall_ms * b, b, "one stream decoding alone"),
    ]
    rows += [batch_row(part, result.median(part), b, part_note(result, part)) for part in PARTS]
    return rows + [
        batch_row("infer (wall)", result.median("infer_wall"), b, "the calling thread's view"),
        batch_row("stage..postprocess", result.steps_ms, b, "each step waited for"),
        batch_row("model.detect", result.median("detect"), b, "one whole call"),
    ]


def batch_row(label: str, ms_per_batch: float, batch: int, note: str) -> list[str]:
    return [label, cell(ms_per_batch), cell(ms_per_batch / batch), note]


def part_note(result: Breakdown, part: str) -> str:
    if part == "infer":
        return f"backend.run, {result.infer_clock}"
    if part == "download" and not result.on_gpu:
        return "none: the outputs are host arrays"
    if part == "download" and result.decodes_on_device:
        return "none: decoded on the device, postprocess fetches the kept boxes"
    return BREAKDOWN_NOTES[part]


def render_ceilings(result: Breakdown, cores: int) -> str:
    """What each side alone would allow: not measurements of the pipeline, bounds to read it against."""
    decode_fps = cores * 1000 / result.decoded.cpu_ms
    model_fps = 1000 * result.batch / result.steps_ms
    return (
        f"ceilings: decoding on {cores} cores ~ {decode_fps:.0f} fps = {decode_fps / FPS:.1f} streams at {FPS} fps; "
        f"the model's steps back to back in one worker ~ {model_fps:.0f} fps = {model_fps / FPS:.1f} streams"
    )


STREAM_COLUMNS = [
    ("streams", 7), ("offered fps", 11), ("fps", 8), ("slowest", 7), ("sustained", 9), ("lost %", 6),
    ("batch", 5), ("detect ms", 9), ("p50 ms", 7), ("p99 ms", 7), ("CPU %", 5), ("", 4),
]  # fmt: skip


def stream_row(run: StreamsRun, cores: int) -> list[str]:
    window = run.window
    sizes = [size for size, _ in window.batches]
    detect_ms = [1000 * seconds for _, seconds in window.batches]
    return [
        str(run.count),
        str(run.count * FPS),
        cell(run.fps, 1),
        cell(min(run.stream_fps)),
        f"{run.sustained}/{run.count}",
        cell(100 * run.lost / max(1, run.read), 1),
        cell(statistics.mean(sizes) if sizes else float("nan"), 1),
        cell(percentile(detect_ms, 50), 1),
        cell(percentile(window.latencies_ms, 50), 1),
        cell(percentile(window.latencies_ms, 99), 1),
        cell(100 * window.cpu_s / (window.wall_s * cores), 0),
        "PASS" if run.passed else "FAIL",
    ]


def describe_setup(settings: Settings, model: DetectionModel, name: str, clip: Path, cores: int) -> str:
    info, letterbox = model.info, "on the device" if isinstance(model.buffers, DeviceInputBuffers) else "on the CPU"
    decode = f"FFmpeg hwaccel {settings.hwaccel} where it opens" if settings.hwaccel else "the CPU"
    workers = settings.workers or "streamer's default"
    return (
        f"device {name} ({model_device(model)}), {cores} CPU cores; model {Path(info.model_id).name} "
        f"({info.backend}, package {info.package}, input {model.spec.width}x{model.spec.height} {model.spec.dtype}"
        f"{', fitted to the frames' if model.fit_to_frames else ''}, letterbox {letterbox})\n"
        f"streams: {clip.name} looping, realtime, policy latest, queue_size {settings.queue_size}, "
        f"decoded on {decode}; "
        f"batch {settings.batch}, max_wait_ms {settings.max_wait_ms:g}, workers {workers}; "
        f"{settings.warmup:g} s warm-up, {settings.seconds:g} s counted; sustained = >= {SUSTAIN:.0%} of {FPS} fps\n"
        "streams table: fps = results/s, slowest = the slowest stream's fps, lost % = frames dropped by `latest` "
        "over the whole run, batch = mean size, detect ms = p50 of the pipeline's model.detect calls, "
        "p50/p99 ms = capture -> result, CPU % = process CPU time / (wall x cores)"
    )


def streams_30fps(runs: list[StreamsRun]) -> int:
    return max((run.count for run in runs if run.passed), default=0)


def throughput_line(runs: list[StreamsRun], breakdown: Breakdown) -> str:
    return (
        f"throughput: streams_30fps={streams_30fps(runs)} fps={headline_run(runs).fps:.1f} "
        f"batch={breakdown.batch} infer_ms={breakdown.median('infer'):.2f}"
    )


@dataclass(frozen=True)
class Checks:
    """What bench/gpu_checks.py found."""

    races: int
    letterbox_max_diff: float
    nvdec: bool
    nvdec_how: str
    trt: str
    trt_how: str


def run_checks(model: DetectionModel, decoded: Decoded, clip: Path, settings: Settings) -> Checks:
    say(f"races: {gpu_checks.RACE_WORKERS} workers against 1, {gpu_checks.RACE_ROUNDS} rounds")
    races = gpu_checks.count_races(model, decoded.frames)
    letterbox = gpu_checks.letterbox_max_diff(model, decoded.frames)
    say("nvdec: the clip decoded with hwaccel cuda")
    nvdec, nvdec_how = gpu_checks.nvdec_frames(clip)
    say("trt: a plan built from the ONNX file and run")
    trt, trt_how = gpu_checks.tensorrt_plan(Path(yolov8n_320()), model_device(model), settings.input, CACHE / "plans")
    return Checks(races, letterbox, nvdec, nvdec_how, trt, trt_how)


def render_checks(checks: Checks) -> str:
    rows = [
        ["races", str(checks.races), "(frame, run) pairs differing from 1 worker's detections; must be 0"],
        ["letterbox_max_diff", f"{checks.letterbox_max_diff:.2f}", "levels, device letterbox vs CPU path; <= 1"],
        ["nvdec", "yes" if checks.nvdec else "no", checks.nvdec_how],
        ["trt", checks.trt, checks.trt_how],
    ]
    return render([("check", 18), ("result", 8), ("how", 0)], rows)


def headline(name: str, runs: list[StreamsRun], checks: Checks) -> str:
    return (
        f"device={name} streams_30fps={streams_30fps(runs)} races={checks.races} "
        f"letterbox_max_diff={checks.letterbox_max_diff:.2f} nvdec={'yes' if checks.nvdec else 'no'} trt={checks.trt}"
    )


# ---- main ------------------------------------------------------------------------------------


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_counts(text: str) -> tuple[int, ...]:
    try:
        counts = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected stream counts such as 8,16,24, got {text!r}") from None
    if not counts or counts[0] < 1:
        raise argparse.ArgumentTypeError(f"stream counts must be >= 1, got {text!r}")
    return tuple(counts)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--device", default="cuda", help='"cuda", "cuda:N" or "cpu" (default cuda)')
    add("--backend", choices=("torch", "onnxruntime"), default="torch", help="torch: the converted package")
    add("--format", choices=("torchscript", "torch-export"), default="torchscript", help="the torch package's format")
    add("--half", action="store_true", help="run the torch package in float16")
    add("--input", type=int, default=640, help="model input size, square (default 640)")
    add("--square", action="store_true", help="letterbox into the full square, not the fitted size")
    add("--streams", type=parse_counts, default=parse_counts("8,16,32,48,64"), help="stream counts, ascending")
    add("--seconds", type=float, default=20.0, help="seconds counted per stream count, after the warm-up")
    add("--warmup", type=float, default=5.0, help="seconds of each run before counting starts")
    add("--batch", type=int, default=32, help="streamer max_batch_size (and the breakdown's batch)")
    add("--max-wait-ms", type=float, default=10.0, help="streamer batching.max_wait_ms")
    add("--workers", type=int, default=None, help="streamer model.workers (default: its own)")
    add("--threads", type=int, default=1, help="streamer model.threads (CPU intra-op threads)")
    add("--queue-size", type=int, default=QUEUE_SIZE, help="each source's queue_size")
    add("--hwaccel", nargs="?", const="cuda", default=None, help='sources decode with this FFmpeg hwaccel ("cuda")')
    add("--frames", type=int, default=450, help="frames in the generated clip (30 fps; shared with throughput.py)")
    add("--sample", type=int, default=96, help="decoded frames the breakdown cycles through")
    add("--runs", type=int, default=20, help="timed batches in the breakdown")
    return parser


def parse_args(argv: Sequence[str] | None) -> Settings:
    parser = build_parser()
    args = parser.parse_args(argv)
    if min(args.batch, args.input, args.queue_size, args.threads, args.frames, args.runs, args.workers or 1) < 1:
        parser.error("--batch, --input, --queue-size, --threads, --frames, --runs and --workers must be >= 1")
    if args.seconds <= 0 or args.warmup < 0:
        parser.error("--seconds must be > 0 and --warmup >= 0")
    if args.half and (args.backend != "torch" or args.device == "cpu"):
        parser.error("--half needs --backend torch on a CUDA device (the converted fp16 package is for GPUs)")
    fields = {name: getattr(args, name) for name in Settings.__dataclass_fields__}
    return Settings(**{**fields, "sample": max(args.sample, args.batch)})


def main(argv: Sequence[str] | None = None) -> None:
    settings = parse_args(argv)
    clip, cores = clip_path(CASES[HEADLINE], settings.frames), usable_cores()
    model_ref = model_id(settings)
    try:
        model = load_model(streams_config(settings, model_ref, clip, 1))
    except StreamerError as exc:  # no GPU here, most often: say so in a line, not a traceback
        sys.exit(f"bench/gpu.py: {exc}\n(on a machine without a CUDA GPU, `--device cpu` runs the same measures on the CPU)")
    name = device_name(model)
    say(f"breakdown: {settings.runs} batches of {settings.batch} on {name}")
    decoded = decode_sample(clip, settings.sample, settings.hwaccel)
    breakdown = measure_breakdown(model, decoded, settings)
    checks = run_checks(model, decoded, clip, settings)
    baseline = gpu_checks.gpu_memory_meter(model_device(model))()
    runs = step_streams(settings, model, model_ref, clip)
    extra = memory_runs(settings, model, model_ref, clip, {run.count for run in runs})
    print(describe_setup(settings, model, name, clip, cores))
    print(render(BREAKDOWN_COLUMNS, breakdown_rows(breakdown)))
    print(render_ceilings(breakdown, cores))
    print(render(STREAM_COLUMNS, [stream_row(run, cores) for run in runs]))
    memory = gpu_checks.memory_rows(baseline, [(run.count, run.window.gpu_bytes) for run in runs + extra])
    print(render([("streams", 7), ("GPU used MiB", 12), ("MiB per stream", 14)], memory))
    print(render_checks(checks))
    print(throughput_line(runs, breakdown))
    print(headline(name, runs, checks))


if __name__ == "__main__":
    main()
