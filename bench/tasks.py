"""Every model family on the CPU, and INT8 against fp32 for YOLOv8n.

For each (architecture, task) pair registered in `streamer.engine.models.REGISTRY`:

ms/frame b1   median wall time of `model.detect([frame])` (preprocess, inference, postprocess)
ms/frame b4   median of `model.detect(four frames)` / 4
post ms       median time of one `model.decode` call at batch 1 (the family's postprocessing:
              NMS, mask decoding, DB contours, CTC, ...; "-" where the family decodes otherwise)
boxes/frame   what the postprocessing had to do; untrained exports (random weights, see the model
              column) run at confidence UNTRAINED_CONFIDENCE so that it has boxes to decode
test          "yes" when `TESTS` names a test that pytest collects and that loads a real model of
              the pair (a pair is counted in `families=` only then, and only when it ran here)

on real photos (scikit-image's astronaut and coffee, matplotlib's Grace Hopper, and Ultralytics'
bus and zidane when ultralytics is installed) resized to 640 x 480. Each pair finds its model in
`MODELS` (an embedded model id, or an export the tests make offline); a pair whose model is not
available here is listed as such and not counted. `TESTS` names, per pair, the test that loads a
real model of it (an export of untrained weights counts: its graph and metadata are Ultralytics'
own); the script checks that pytest collects that node id.

INT8: nudenet-320n (YOLOv8n at 320) quantized with `streamer.engine.quantize` (ONNX Runtime static
QDQ, per-channel int8 weights, percentile ranges, the decoding tail left float), calibrated on a
clip of the photos (crops at several zooms and shifts), then checked on
held-out frames (mirrored photos and other crops) on which the fp32 model finds boxes: agreement is
the F1 of int8 boxes against fp32 ones (one-to-one, same class, IoU >= 0.5; both shares are printed),
speed is `detect` fps at batch 1, fp32 and int8 calls alternating, medians.

The last line printed is exactly:

    families=<pairs registered and tested> int8_speedup=<x> int8_agreement=<y>

Run from the project root:  python bench/tasks.py [--repeat 15] [--threads 1]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `tests` for the offline exports

from streamer.engine import AutoModel  # noqa: E402
from streamer.engine.models import REGISTRY  # noqa: E402
from streamer.engine.models.base import DetectionModel  # noqa: E402
from streamer.engine.quantize import Agreement, agreement_of, quantize_model  # noqa: E402
from streamer.frames import Frame  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SIZE = (640, 480)
INT8_MODEL = "nudenet-320n"
# (zoom, shift) of each photo the int8 model is calibrated on; (zoom, shift, mirror) of those it is checked on
CALIBRATION_VIEWS = ((1.0, 0.5), (0.8, 0.3), (0.6, 0.7), (0.9, 0.8))
HELD_OUT_VIEWS = ((0.9, 0.5, True), (0.7, 0.4, True), (1.0, 0.5, True), (0.5, 0.5, False), (0.75, 0.6, False),
                  (0.85, 0.2, True))
Pair = tuple[str, str]


class Unavailable(Exception):
    """This pair's model cannot be had on this machine."""


@dataclass(frozen=True)
class ModelSource:
    """How to get a pair's model (an id or a path), and whether its weights are trained."""

    make: Callable[[], str]
    weights: str = "trained"
    confidence: float | None = None  # None: the family's default


def embedded(model_id: str) -> ModelSource:
    return ModelSource(lambda: model_id)


# Exports whose weights are trained; the other Ultralytics exports are untrained (layout and metadata real).
TRAINED_EXPORTS = {"yolo11n-pose"}
# Untrained exports find nothing at the usual thresholds; at this one their postprocessing has boxes to
# decode (masks, keypoints, rotated NMS), up to the most a family keeps: a worst case, not a typical one.
UNTRAINED_CONFIDENCE = 0.0


def ultralytics_export(name: str) -> ModelSource:
    """An export tests/engine/ultralytics_exports.py makes offline (and caches)."""

    def make() -> str:
        if importlib.util.find_spec("ultralytics") is None:
            raise Unavailable("ultralytics is not installed (the export needs it)")
        from tests.engine.ultralytics_exports import exported

        try:
            return str(exported(name))
        except BaseException as exc:  # pytest.skip raises an OutcomeException, a BaseException
            if isinstance(exc, KeyboardInterrupt):
                raise
            raise Unavailable(f"{name}: {exc}") from exc

    if name in TRAINED_EXPORTS:
        return ModelSource(make)
    return ModelSource(make, "untrained", UNTRAINED_CONFIDENCE)


# pair -> where its model comes from
MODELS: dict[Pair, ModelSource] = {
    ("yolo", "object-detection"): embedded("nudenet-320n"),
    ("centerface", "face-detection"): embedded("centerface"),
    ("classifier", "classification"): embedded("ppocr-text-direction"),
    ("embedder", "embedding"): embedded("mobilenetv2-reid"),
    ("ppocr", "text-detection"): embedded("ppocr-det"),
    ("ppocr", "text-recognition"): embedded("ppocr-rec"),
    ("yolo", "keypoint-detection"): ultralytics_export("yolo11n-pose"),
    ("yolo", "instance-segmentation"): ultralytics_export("yolov8n-seg"),
    ("yolo", "classification"): ultralytics_export("yolov8n-cls"),
    ("yolo", "oriented-object-detection"): ultralytics_export("yolov8n-obb"),
    ("yolo-end2end", "object-detection"): ultralytics_export("yolo26n"),
    ("yolo-end2end", "instance-segmentation"): ultralytics_export("yolo26n-seg"),
    ("yolo-end2end", "keypoint-detection"): ultralytics_export("yolo26n-pose"),
    ("yolo-end2end", "oriented-object-detection"): ultralytics_export("yolo26n-obb"),
    ("rtdetr", "object-detection"): ultralytics_export("rtdetr-l"),
}

# pair -> the test (its pytest node id) that loads a real model of that pair
NMS_FREE_TEST = (
    "tests/engine/test_yolo_end2end.py::test_nms_free_exports_when_loaded_by_path_give_all_300_rows_unsuppressed"
)
TESTS: dict[Pair, str] = {
    ("yolo", "object-detection"): "tests/engine/test_yolo.py::test_yolo_finds_the_astronauts_face_on_the_real_export",
    ("centerface", "face-detection"): "tests/engine/test_centerface.py::test_centerface_finds_the_astronauts_face",
    ("classifier", "classification"): (
        "tests/engine/test_engine_end_to_end.py::test_classifier_tells_upright_text_from_upside_down_text"
    ),
    ("embedder", "embedding"): (
        "tests/engine/test_embedder.py::test_embedder_when_objects_move_and_shrink_ranks_each_above_the_others"
    ),
    ("ppocr", "text-detection"): (
        "tests/engine/test_ocr.py::test_detector_when_lines_are_rendered_finds_each_with_corners_around_its_ink"
    ),
    ("ppocr", "text-recognition"): "tests/engine/test_ocr.py::test_recognizer_reads_rendered_lines_exactly",
    ("yolo", "keypoint-detection"): (  # parametrised by photo: any of its cases will do
        "tests/engine/test_yolo_pose.py::"
        "test_yolo_pose_when_given_a_real_photo_finds_the_people_and_keypoints_ultralytics_finds"
    ),
    ("yolo", "instance-segmentation"): (
        "tests/engine/test_yolo_segment.py::"
        "test_yolo_segment_when_the_untrained_export_runs_gives_one_crop_mask_per_box_within_the_frame"
    ),
    ("yolo", "classification"): (
        "tests/engine/test_yolo_classify.py::"
        "test_yolo_classify_when_the_untrained_export_runs_gives_one_full_frame_box_with_all_scores"
    ),
    ("yolo", "oriented-object-detection"): (
        "tests/engine/test_yolo_obb.py::"
        "test_yolo_obb_when_the_untrained_export_runs_gives_corners_angles_and_their_bounds"
    ),
    ("yolo-end2end", "object-detection"): (
        NMS_FREE_TEST + "[yolo26n-UltralyticsEnd2End-yolo-end2end-object-detection]"
    ),
    ("yolo-end2end", "instance-segmentation"): (
        NMS_FREE_TEST + "[yolo26n-seg-End2EndSegment-yolo-end2end-instance-segmentation]"
    ),
    ("yolo-end2end", "keypoint-detection"): (
        NMS_FREE_TEST + "[yolo26n-pose-End2EndPose-yolo-end2end-keypoint-detection]"
    ),
    ("yolo-end2end", "oriented-object-detection"): (
        NMS_FREE_TEST + "[yolo26n-obb-End2EndObb-yolo-end2end-oriented-object-detection]"
    ),
    ("rtdetr", "object-detection"): NMS_FREE_TEST + "[rtdetr-l-RtDetr-rtdetr-object-detection]",
}


def registered_pairs() -> list[Pair]:
    return sorted({(architecture, task) for architecture, task, _ in REGISTRY})


def collected_tests(nodes: list[str]) -> set[str] | None:
    """The node ids pytest collects from the files `nodes` name (None when collecting fails)."""
    files = sorted({node.partition("::")[0] for node in nodes if (ROOT / node.partition("::")[0]).is_file()})
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *files],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    return set(done.stdout.split()) if done.returncode == 0 else None


def defines_test(node: str, collected: set[str] | None) -> bool:
    """Whether pytest collects `node`; if collecting failed, whether its file defines the function."""
    if collected is not None:
        return node in collected or any(found.startswith(node + "[") for found in collected)
    path, _, function = node.partition("::")
    file = ROOT / path
    name = function.split("[")[0]
    return bool(name) and file.is_file() and f"def {name}(" in file.read_text()


# --- frames --------------------------------------------------------------------------------------


def photos() -> list[np.ndarray]:
    """RGB photos with people and things in them, as installed by the test dependencies."""
    from PIL import Image
    from skimage import data

    found = [data.astronaut(), data.coffee()]
    candidates = [("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"), ("ultralytics", "assets/bus.jpg"),
                  ("ultralytics", "assets/zidane.jpg")]
    for package, name in candidates:
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.origin is not None:
            path = Path(spec.origin).parent / name
            if path.is_file():
                found.append(np.asarray(Image.open(path).convert("RGB")))
    return found


def view(photo: np.ndarray, zoom: float, shift: float, mirror: bool = False) -> np.ndarray:
    """A SIZE crop of the photo: `zoom` of its shorter side, slid `shift` (0..1) along the longer one."""
    from PIL import Image

    height, width = photo.shape[:2]
    aspect = SIZE[0] / SIZE[1]
    crop_h = int(min(height, width / aspect) * zoom)
    crop_w = int(crop_h * aspect)
    left = int((width - crop_w) * shift)
    top = int((height - crop_h) * 0.5)
    crop = photo[top : top + crop_h, left : left + crop_w]
    image = np.asarray(Image.fromarray(crop).resize(SIZE, Image.BILINEAR))
    return np.ascontiguousarray(image[:, ::-1]) if mirror else image


def as_frames(images: list[np.ndarray]) -> list[Frame]:
    return [Frame("bench", index, None, 0.0, image=image) for index, image in enumerate(images)]


def write_clip(path: Path, images: list[np.ndarray]) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = SIZE[0], SIZE[1], "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "18"}
        for image in images:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
    return path


# --- timing ----------------------------------------------------------------------------------


@contextlib.contextmanager
def timed_decode(model: DetectionModel) -> Iterator[list[float]]:
    """The seconds of every `model.decode` call made in the block."""
    times: list[float] = []
    decode = model.decode

    def wrapped(*args, **kwargs):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        try:
            return decode(*args, **kwargs)
        finally:
            times.append(time.perf_counter() - start)

    model.decode = wrapped  # type: ignore[method-assign]
    try:
        yield times
    finally:
        del model.decode


def median_ms(call: Callable[[], object], repeat: int, per: int = 1) -> float:
    call()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000 / per)
    return statistics.median(samples)


@dataclass
class Row:
    pair: Pair
    source: str
    test: str
    status: str
    b1_ms: float | None = None
    b4_ms: float | None = None
    post_ms: float | None = None
    boxes: float | None = None  # per frame, on the frames timed: how much the postprocessing had to do

    @property
    def counted(self) -> bool:
        return self.status == "ok" and self.test.startswith("yes")


def bench_pair(pair: Pair, frames: list[Frame], repeat: int, threads: int, collected: set[str] | None) -> Row:
    node = TESTS.get(pair)
    test = ("yes" if defines_test(node, collected) else "missing") if node else "none"
    found = MODELS.get(pair)
    if found is None:
        return Row(pair, "-", test, "no model in the table")
    try:
        source = found.make()
        model = AutoModel.from_pretrained(source, batch_size=4, threads=threads, confidence=found.confidence)
    except Unavailable as exc:
        return Row(pair, "-", test, f"unavailable: {exc}")
    except Exception as exc:  # report any family that fails to load, keep benchmarking the others
        return Row(pair, "?", test, f"failed to load: {type(exc).__name__}: {str(exc)[:80]}")
    label = f"{Path(source).name} ({found.weights})"
    try:
        b1 = median_ms(lambda: model.detect(frames[:1]), repeat)
        b4 = median_ms(lambda: model.detect(frames[:4]), max(3, repeat // 3), per=4)
        with timed_decode(model) as decodes:
            median_ms(lambda: model.detect(frames[:1]), repeat)
    except Exception as exc:  # a family that fails on these frames is reported, not counted
        return Row(pair, label, test, f"failed: {type(exc).__name__}: {str(exc)[:80]}")
    post = statistics.median(decodes[1:]) * 1000 if len(decodes) > 1 else None
    boxes = statistics.mean(len(found) for found in model.detect(frames[:4]))
    return Row(pair, label, test, "ok", b1, b4, post, boxes)


# --- int8 ------------------------------------------------------------------------------------


@dataclass
class Int8Result:
    fp32_fps: float
    int8_fps: float
    agreement: Agreement
    frames: int
    calibration: str

    @property
    def speedup(self) -> float:
        return self.int8_fps / self.fp32_fps


def bench_int8(images: list[np.ndarray], work: Path, repeat: int, threads: int) -> Int8Result:
    calibration = [view(image, zoom, shift) for image in images for zoom, shift in CALIBRATION_VIEWS]
    held_out = [view(image, zoom, shift, mirror) for image in images for zoom, shift, mirror in HELD_OUT_VIEWS]
    clip = write_clip(work / "calibration.mp4", calibration)
    report = anyio.run(lambda: quantize_model(INT8_MODEL, clip, out_dir=work / INT8_MODEL, frames=len(calibration)))
    fp32 = AutoModel.from_pretrained(str(report.folder), batch_size=1, threads=threads)
    int8 = AutoModel.from_pretrained(str(report.folder), batch_size=1, threads=threads, quantization=["fp32", "int8"])
    assert (fp32.info.package, int8.info.package) == ("nudenet-3.4.2", "nudenet-3.4.2-int8"), (fp32.info, int8.info)
    frames = [frame for frame in as_frames(held_out) if len(fp32(frame))]  # frames where fp32 finds boxes
    found_fp32 = [fp32(frame) for frame in frames]
    found_int8 = [int8(frame) for frame in frames]
    fp32_ms, int8_ms = alternating_ms(fp32, int8, frames, repeat)
    note = f"{report.frames} frames, agreement there {report.agreement.score:.3f}"
    return Int8Result(1000 / fp32_ms, 1000 / int8_ms, agreement_of(found_fp32, found_int8), len(frames), note)


def alternating_ms(a: DetectionModel, b: DetectionModel, frames: list[Frame], repeat: int) -> tuple[float, float]:
    """Median ms/frame of each model over all frames, one at a time, the two models' passes alternating."""

    def one_pass(model: DetectionModel) -> float:
        start = time.perf_counter()
        for frame in frames:
            model.detect([frame])
        return (time.perf_counter() - start) * 1000 / len(frames)

    one_pass(a), one_pass(b)
    times_a, times_b = [], []
    for _ in range(max(3, repeat // 3)):
        times_a.append(one_pass(a))
        times_b.append(one_pass(b))
    return statistics.median(times_a), statistics.median(times_b)


# --- report ----------------------------------------------------------------------------------


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(text.ljust(width) for text, width in zip(row, widths)).rstrip() for row in [header, *rows]]
    return "\n".join(lines)


def cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=15, help="timed calls per measurement (medians)")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads per model (streamer's default: 1)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    images = photos()
    frames = as_frames([view(image, 1.0, 0.5) for image in images])
    collected = collected_tests(list(TESTS.values()))
    rows = []
    for pair in registered_pairs():
        print(f"benchmarking {pair[0]} / {pair[1]} ...", file=sys.stderr, flush=True)
        rows.append(bench_pair(pair, frames, args.repeat, args.threads, collected))
    print(f"int8: quantizing {INT8_MODEL} ...", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-tasks-") as work:
        int8 = bench_int8(images, Path(work), args.repeat, args.threads)
    header = ["architecture", "task", "model", "ms/frame b1", "ms/frame b4", "post ms", "boxes/frame", "test", "status"]
    lines = [[*row.pair, row.source, cell(row.b1_ms), cell(row.b4_ms), cell(row.post_ms), cell(row.boxes), row.test,
              row.status] for row in rows]
    print(f"CPU, {args.threads} ONNX Runtime thread(s) per model, frames {SIZE[0]}x{SIZE[1]}, {len(images)} photos")
    print(table(header, lines))
    print()
    a = int8.agreement
    print(f"INT8 {INT8_MODEL} (calibrated on {int8.calibration}), checked on {int8.frames} held-out frames "
          "with fp32 boxes:")
    print(f"  fps b1: fp32 {int8.fp32_fps:.1f}, int8 {int8.int8_fps:.1f} ({int8.speedup:.2f}x)")
    print(f"  fp32 boxes matched by int8 {a.fp32_matched:.3f} ({a.matched}/{a.fp32_boxes}), "
          f"int8 boxes matched by fp32 {a.int8_matched:.3f} ({a.matched}/{a.int8_boxes}), F1 {a.score:.3f}")
    print(f"took {time.perf_counter() - started:.0f} s")
    counted = sum(row.counted for row in rows)
    print(f"families={counted} int8_speedup={int8.speedup:.2f} int8_agreement={a.score:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
