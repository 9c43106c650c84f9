"""Contender 3, Ultralytics: `YOLO(<file>.onnx).predict(source, stream=True)`, run with its venv's Python.

One file: Ultralytics' video loader (decode in the calling thread). Several sources, or a live one:
a `.streams` file listing them, read by Ultralytics' LoadStreams threads (cv2), batched one frame per
stream; files with `stream_buffer=True` (every frame kept, as streamer's `block`), live sources
with its default (the latest frame of each stream). `imgsz` is the model's 320; ONNX Runtime and
torch keep their defaults (threads = cores). A warm-up predict on a black frame loads the session
before the timed window. LoadStreams does not timestamp frames, so there is no latency to take.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from ultralytics.utils.nms import TorchNMS  # noqa: E402  (imports no torchvision)

from bench.peers import torchvision_standin  # noqa: E402
from bench.peers.measure import Meter, report, runner_args, say  # noqa: E402

TORCHVISION = torchvision_standin.use_if_needed(nms=TorchNMS.nms)

import onnxruntime  # noqa: E402
import torch  # noqa: E402
import ultralytics  # noqa: E402
from ultralytics import YOLO  # noqa: E402

BLACK_1080P = np.zeros((1080, 1920, 3), dtype=np.uint8)


def source_for(sources: list[str], folder: Path) -> str:
    """One source as is; several through a `.streams` file (Ultralytics' multi-stream mode)."""
    if len(sources) == 1:
        return sources[0]
    listing = folder / "sources.streams"
    listing.write_text("\n".join(sources) + "\n")
    return str(listing)


def main() -> None:
    args = runner_args(__doc__.splitlines()[0])
    say(TORCHVISION)
    model = YOLO(args.model, task="detect")
    model.predict(BLACK_1080P, imgsz=args.imgsz, verbose=False)  # loads the ONNX Runtime session
    meter = Meter()
    with tempfile.TemporaryDirectory(prefix="bench-ultralytics-") as scratch:
        source = source_for(args.sources, Path(scratch))
        buffered = len(args.sources) > 1 and not args.live
        meter.start()
        for _ in model.predict(source, stream=True, imgsz=args.imgsz, verbose=False, stream_buffer=buffered):
            meter.result()
            if args.live and meter.elapsed() > args.seconds:
                break
    versions = {"ultralytics": ultralytics.__version__, "torch": torch.__version__, "onnxruntime": onnxruntime.__version__}
    shape = list(model.predictor.preprocess([BLACK_1080P]).shape)
    report(meter.finish(versions=versions, input_shape=shape, note=TORCHVISION))


if __name__ == "__main__":
    main()
