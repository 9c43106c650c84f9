"""Density, Roboflow `inference`'s side: InferencePipeline over N RTSP cameras at max_fps, in its venv.

`InferencePipeline.init_with_custom_logic(video_reference=[urls], max_fps=...)` with inference_runner.py's
`Detector` (the same ONNX file, cv2 letterbox to 320 x 320, one ONNX Runtime batch for the frames it
is handed, cv2 NMS) and a sink that takes each result's latency as density_streamer.py does: now
minus the frame's capture time on the stream's clock, the earliest `frame_timestamp - frame_id / fps`
seen plus `frame_id / fps` (frame_id counts every frame the source grabbed, dropped ones too).

`ENABLE_FRAME_DROP_ON_VIDEO_FILE_RATE_LIMITING=True` is set (as the `inference` CLI sets it): then
each source drops frames down to max_fps itself. Without it, InferencePipeline limits the batches
its multiplexer yields to max_fps / N, so every camera would get 5 / N fps, not 5 (and asked for
5 x N, its drop-based limiter gave 3.75 fps per camera at N = 2 here). Each source picks its frames
with a stride drawn around measured fps / max_fps, which here gives 4-4.5 fps when asked for 5:
density.py holds each contender to the rate it gives with one camera (see there). `grabbed_fps`:
frames per second each source grabbed (from frame_id), to show the stream came at 30.
The window, CPU and `infer_cpu_ms` are density_streamer.py's; `--decode-only` opens the streams with
cv2.VideoCapture as inference's VideoSource does and grabs every frame, retrieving max_fps of them.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from pathlib import Path
from typing import Any, Callable

os.environ["ENABLE_FRAME_DROP_ON_VIDEO_FILE_RATE_LIMITING"] = "True"
ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.peers.inference_runner import Detector  # noqa: E402  (imports inference, with the torchvision stand-in)
from bench.peers.density_window import ResultWindow, decode_window  # noqa: E402
from bench.peers.measure import cpu_seconds, report  # noqa: E402

import cv2  # noqa: E402
from inference import InferencePipeline  # noqa: E402

CPU_RUNS = 20
FPS = 30.0  # the clip's


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--clip", required=True)
    parser.add_argument("--urls", nargs="+", required=True)
    parser.add_argument("--max-fps", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--decode-only", action="store_true")
    return parser.parse_args()


class Window(ResultWindow):
    """Latency on the stream's clock from inference's VideoFrame (source_id, frame_id, frame_timestamp)."""

    def __init__(self, cameras: int, warmup: float, seconds: float) -> None:
        super().__init__([f"cam{index}" for index in range(cameras)], warmup, seconds)
        self.origins: dict[int, float] = {}
        self.grabbed: dict[int, list[int]] = {}  # frame_id at the window's first and last result

    def frame(self, frame: Any) -> None:
        pts, source = frame.frame_id / FPS, frame.source_id or 0
        origin = min(self.origins.get(source, float("inf")), frame.frame_timestamp.timestamp() - pts)
        self.origins[source] = origin
        if self.result(f"cam{source}", origin + pts):
            self.grabbed.setdefault(source, [frame.frame_id, frame.frame_id])[1] = frame.frame_id

    def measured(self) -> dict[str, Any]:
        grabbed = {f"cam{key}": (last - first) / self.seconds for key, (first, last) in self.grabbed.items()}
        return super().measured() | {"grabbed_fps": grabbed}


def infer_cpu_ms(detector: Detector, clip: str) -> float:
    capture = cv2.VideoCapture(clip)
    images = [capture.read()[1] for _ in range(8)]
    capture.release()
    for image in images[:3]:
        detector([image])
    started = cpu_seconds()
    for index in range(CPU_RUNS):
        detector([images[index % len(images)]])
    return 1000 * (cpu_seconds() - started) / CPU_RUNS


def run_pipeline(args: argparse.Namespace) -> dict[str, Any]:
    detector = Detector(args.model, 320)
    cost = infer_cpu_ms(detector, args.clip)
    window = Window(len(args.urls), args.warmup, args.seconds)

    def on_prediction(predictions: Any, frames: Any) -> None:
        for frame in frames if isinstance(frames, list) else [frames]:
            if frame is not None:
                window.frame(frame)

    pipeline = InferencePipeline.init_with_custom_logic(
        video_reference=args.urls if len(args.urls) > 1 else args.urls[0],
        on_video_frame=lambda frames: detector([frame.image for frame in (frames if isinstance(frames, list) else [frames])]),
        on_prediction=on_prediction,
        max_fps=args.max_fps,
    )
    pipeline.start(use_main_thread=False)
    window.done.wait(args.warmup + args.seconds + 60)
    pipeline.terminate()
    pipeline.join()
    return window.measured() | {"infer_cpu_ms": cost}


def run_decode_only(args: argparse.Namespace) -> dict[str, Any]:
    """cv2.VideoCapture per stream, as VideoSource opens it: every frame grabbed, max_fps retrieved."""
    counts = {f"cam{index}": 0 for index in range(len(args.urls))}
    every = max(1, round(FPS / args.max_fps))

    def reader(camera: str, url: str) -> Callable[[threading.Event], None]:
        def read(stop: threading.Event) -> None:
            capture, grabbed = cv2.VideoCapture(url), 0
            while not stop.is_set() and capture.grab():
                grabbed += 1
                counts[camera] += grabbed % every == 0 and capture.retrieve()[0]
            capture.release()

        return read

    return decode_window({camera: reader(camera, url) for camera, url in zip(counts, args.urls)}, counts, args.warmup, args.seconds)


def main() -> None:
    args = parse_args()
    report(run_decode_only(args) if args.decode_only else run_pipeline(args))


if __name__ == "__main__":
    main()
