"""The checks bench/gpu.py runs besides its throughput figure: what the first GPU must answer (issue 21).

races            frames decoded from the clip, in fixed batches, detected by one thread (the reference),
                 then by RACE_WORKERS threads at once, each going over every batch RACE_ROUNDS times
                 in its own order (input buffers, streams and the model shared, as the pipeline's
                 workers share them): the count of (frame, run) pairs whose detections differ from
                 the reference (another count of boxes, a class, a box off by more than BOX_TOLERANCE_PX
                 or a confidence by more than CONFIDENCE_TOLERANCE). 0 is the only good answer.
letterbox        the model's own input buffers (on its GPU) against the CPU path (FFmpeg's scaler) on
                 the same frames, yuv420p and nv12: the largest difference, in 8-bit levels (<= 1 expected).
nvdec            the clip decoded by a file source with hwaccel "cuda" and the decode threads a
                 16-core machine gets: "yes" when every frame came as nv12 and nothing fell back.
trt              a TensorRT plan built from the benchmark's ONNX file (fp32, dynamic batch 1..4, cached
                 like any plan) and run on a batch: "ok", "error" (the reason goes to stderr), or "n/a"
                 where TensorRT, CuPy or a GPU is missing.
memory           the GPU's used memory (every context, pool and NVDEC surface: cudaMemGetInfo) after
                 each streams run, less what it was before the first one, per stream; where the
                 stepping stopped short of MEMORY_STREAMS, a short run at each of those measures it.
"""

from __future__ import annotations

import concurrent.futures
import random
import sys
import threading
from pathlib import Path
from typing import Any, Callable

import numpy as np

from streamer.device import DeviceInputBuffers, array_device, to_host
from streamer.engine import DetectionModel
from streamer.engine.preprocess import InputBuffers
from streamer.frames import Detections, Frame

RACE_WORKERS = 4
RACE_ROUNDS = 3
RACE_BATCH = 8
BOX_TOLERANCE_PX = 1.0
CONFIDENCE_TOLERANCE = 1e-2
NVDEC_THREADS_OF = 16
MEMORY_STREAMS = (32, 64)  # the cores whose default thread count used to overflow NVDEC's surfaces


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---- races -----------------------------------------------------------------------------------


def race_batches(decoded: list[Any], size: int = RACE_BATCH) -> list[list[Frame]]:
    """Fixed batches of fresh Frames over the decoded sample (the last one short, so fixed-batch models pad)."""
    frames = [Frame("race", i, None, 0.0, decoded=frame) for i, frame in enumerate(decoded)]
    frames = frames[: len(frames) - size // 2]  # a partial last batch
    return [frames[i : i + size] for i in range(0, len(frames), size)]


def same_detections(want: Detections, got: Detections) -> bool:
    if len(want) != len(got) or not np.array_equal(want.class_id, got.class_id):
        return False
    return bool(
        np.all(np.abs(want.xyxy - got.xyxy) <= BOX_TOLERANCE_PX)
        and np.all(np.abs(want.confidence - got.confidence) <= CONFIDENCE_TOLERANCE)
    )


def count_races(model: DetectionModel, decoded: list[Any], workers: int = RACE_WORKERS) -> int:
    """(frame, run) pairs whose detections under `workers` concurrent threads differ from one thread's."""
    batches = race_batches(decoded)
    reference = [model.detect(batch) for batch in batches]

    def worker(seed: int) -> int:
        order = list(range(len(batches))) * RACE_ROUNDS
        random.Random(seed).shuffle(order)
        differ = 0
        for index in order:
            got = model.detect(batches[index])
            differ += sum(not same_detections(w, g) for w, g in zip(reference[index], got))
        return differ

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        return sum(pool.map(worker, range(workers)))


# ---- letterbox -------------------------------------------------------------------------------


def letterbox_max_diff(model: DetectionModel, decoded: list[Any], count: int = 8) -> float:
    """The largest difference, in 8-bit levels, between the model's device letterbox (NumPy on the
    CPU) and the CPU path, over `count` frames as decoded and the same frames as nv12."""
    chosen = decoded[:count]
    frames = [Frame("lb", i, None, 0.0, decoded=frame) for i, frame in enumerate(chosen)]
    frames += [Frame("lb", count + i, None, 0.0, decoded=frame.reformat(format="nv12")) for i, frame in enumerate(chosen)]
    device = model.buffers.device if isinstance(model.buffers, DeviceInputBuffers) else array_device("cpu")
    spec = model.spec
    worst = 0.0
    for start in range(0, len(frames), count):
        part = frames[start : start + count]
        expected, _ = InputBuffers(spec, len(part)).acquire().fill(part)
        pool = DeviceInputBuffers(spec, len(part), device)
        buffer = pool.acquire()
        got, _ = buffer.fill(part)
        got = to_host(got)
        pool.release(buffer)
        difference = np.abs(np.asarray(got, np.float32) - np.asarray(expected, np.float32)).max()
        worst = max(worst, float(difference) / float(spec.scale))
    return worst


# ---- NVDEC -----------------------------------------------------------------------------------


def nvdec_frames(clip: Path, frames: int = 60) -> tuple[bool, str]:
    """Whether NVDEC decodes the clip at a 16-core machine's thread count: every frame nv12, no fallback."""
    from streamer.config import FileSourceConfig
    from streamer.sources import AvSource
    from streamer.sources.hwaccel import HardwareDecoding

    source = AvSource(FileSourceConfig(id="nvdec", path=str(clip), hwaccel="cuda", max_frames=frames))
    source.hardware = HardwareDecoding(
        "cuda", None, source.stats, source.describe(), str, cpu_count=NVDEC_THREADS_OF
    )
    formats = {item.decoded.format.name for item in source.frames(threading.Event()) if isinstance(item, Frame)}
    fell_back = source.stats.hardware_fallbacks
    ok = formats == {"nv12"} and not fell_back
    return ok, f"pixel formats {sorted(formats)}, {fell_back} fallback(s), {source.hardware.threads} decode threads"


# ---- TensorRT --------------------------------------------------------------------------------


def tensorrt_plan(onnx_path: Path, device: str, input_size: int, cache_root: Path) -> tuple[str, str]:
    """("ok" | "error" | "n/a", what happened): a plan built (or found cached) for this GPU, then run."""
    from streamer.engine.backends.tensorrt import PlanSettings, TensorRTBackend, build_plan_for_device

    if device == "cpu":
        return "n/a", "the run is on the CPU"
    try:
        import cupy  # noqa: F401
        import tensorrt
    except (ImportError, OSError) as exc:
        return "n/a", f"cannot import it: {exc}"
    try:
        plan = build_plan_for_device(onnx_path, device, cache_root, PlanSettings(False, 1, 4))
        backend = TensorRTBackend(plan, name=onnx_path.name, device=device)
        batch = np.random.default_rng(0).random((2, 3, input_size, input_size), dtype=np.float32)
        outputs = backend.run(batch.astype(backend.input_dtype))
        shapes = [tuple(to_host(output).shape) for output in outputs]
        return "ok", f"TensorRT {tensorrt.__version__}: plan of {len(plan) / 1e6:.1f} MB, outputs {shapes}"
    except Exception as exc:  # any failure is the answer to report, whatever raised it
        return "error", f"{type(exc).__name__}: {exc}"


# ---- memory ----------------------------------------------------------------------------------


def gpu_memory_meter(device: str) -> Callable[[], int | None]:
    """A function giving the bytes used on the GPU behind `device` now (None on the CPU)."""
    if device == "cpu":
        return lambda: None
    index = int(device.partition(":")[2] or 0)
    try:
        import cupy
    except ImportError:
        import torch

        def used_torch() -> int:
            free, total = torch.cuda.mem_get_info(index)
            return total - free

        return used_torch

    def used() -> int:
        with cupy.cuda.Device(index):
            free, total = cupy.cuda.runtime.memGetInfo()
        return total - free

    return used


def memory_rows(baseline: int | None, used: list[tuple[int, int | None]]) -> list[list[str]]:
    """[streams, used MiB, MiB per stream] for each streams run measured against `baseline`."""
    rows = []
    for count, now in used:
        if baseline is None or now is None:
            rows.append([str(count), "n/a", "n/a"])
            continue
        rows.append([str(count), f"{now / 2**20:.0f}", f"{(now - baseline) / 2**20 / count:.1f}"])
    return rows
