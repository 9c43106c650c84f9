"""Contender 4, Roboflow `inference`: InferencePipeline with custom logic, run with its venv's Python.

`InferencePipeline.init_with_custom_logic` with the sources as `video_reference` (a list for several:
its multiplexer hands `on_video_frame` one frame per source), an `on_video_frame` that runs the same
ONNX file through a default `onnxruntime.InferenceSession` (threads = cores), as a user of
`inference` would write it: cv2 letterbox to 320 x 320, one batch for the frames it is handed, YOLOv8
output decoding with cv2's NMS; and an `on_prediction` sink that counts results. The pipeline's
defaults for everything else: files are read without dropping a frame, live streams keep the newest.
Latency: now minus the frame's `frame_timestamp` (taken by `inference` when it grabs the frame).
"""

from __future__ import annotations

import importlib.metadata
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.peers import torchvision_standin  # noqa: E402
from bench.peers.measure import Meter, report, runner_args, say  # noqa: E402

TORCHVISION = torchvision_standin.use_if_needed()

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import onnxruntime  # noqa: E402
from inference import InferencePipeline  # noqa: E402

CONFIDENCE, IOU, PAD = 0.25, 0.45, 114


class Detector:
    """YOLOv8 detection with an ONNX Runtime session: letterbox, one batch, decode and NMS per image."""

    def __init__(self, model: str, size: int) -> None:
        self.session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
        self.input_name, self.size = self.session.get_inputs()[0].name, size

    def __call__(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """Detections (x1, y1, x2, y2, confidence, class) in source pixels, for BGR images."""
        boxes = [self.letterbox(image) for image in images]
        batch = np.stack([tensor for tensor, _, _ in boxes])
        (output,) = self.session.run(None, {self.input_name: batch})
        return [self.decode(rows, scale, offset) for rows, (_, scale, offset) in zip(output, boxes)]

    def letterbox(self, image: np.ndarray) -> tuple[np.ndarray, float, tuple[int, int]]:
        height, width = image.shape[:2]
        scale = self.size / max(height, width)
        new_w, new_h = round(width * scale), round(height * scale)
        canvas = np.full((self.size, self.size, 3), PAD, dtype=np.uint8)
        top, left = (self.size - new_h) // 2, (self.size - new_w) // 2
        canvas[top : top + new_h, left : left + new_w] = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        tensor = canvas[:, :, ::-1].transpose(2, 0, 1).astype(np.float32) / 255.0
        return tensor, scale, (left, top)

    def decode(self, rows: np.ndarray, scale: float, offset: tuple[int, int]) -> np.ndarray:
        scores = rows[4:].T  # (anchors, classes)
        classes, confidence = scores.argmax(axis=1), scores.max(axis=1)
        keep = confidence >= CONFIDENCE
        cx, cy, w, h = rows[:4, keep]
        xywh = np.stack([cx - w / 2, cy - h / 2, w, h], axis=1)
        chosen = cv2.dnn.NMSBoxesBatched(xywh.tolist(), confidence[keep].tolist(), classes[keep].tolist(), CONFIDENCE, IOU)
        chosen = np.asarray(chosen, dtype=int).reshape(-1)
        xyxy = (xywh[chosen] + [[-offset[0], -offset[1], 0, 0]]) / scale
        xyxy[:, 2:] += xyxy[:, :2]
        return np.column_stack([xyxy, confidence[keep][chosen], classes[keep][chosen]])


def counting_sink(meter: Meter, live: bool) -> Any:
    """An `on_prediction` sink for one source or several (lists, in source order, None for gaps)."""

    def on_prediction(predictions: Any, frames: Any) -> None:
        for frame in frames if isinstance(frames, list) else [frames]:
            if frame is not None:
                meter.result(frame.frame_timestamp.timestamp() if live else None)

    return on_prediction


def main() -> None:
    args = runner_args(__doc__.splitlines()[0])
    say(TORCHVISION)
    detector, meter = Detector(args.model, args.imgsz), Meter()
    detector([np.zeros((1080, 1920, 3), dtype=np.uint8)])  # warm the session up, as the other contenders do
    pipeline = InferencePipeline.init_with_custom_logic(
        video_reference=args.sources if len(args.sources) > 1 else args.sources[0],
        on_video_frame=lambda frames: detector([frame.image for frame in frames]),
        on_prediction=counting_sink(meter, args.live),
    )
    meter.start()
    pipeline.start(use_main_thread=not args.live)  # on the main thread, start() returns when the files end
    if args.live:
        time.sleep(args.seconds)
        pipeline.terminate()
    pipeline.join()
    versions = {name: importlib.metadata.version(name) for name in ("inference-cpu", "onnxruntime", "opencv-python")}
    report(meter.finish(versions=versions, input_shape=[1, 3, args.imgsz, args.imgsz], note=TORCHVISION))


if __name__ == "__main__":
    main()
