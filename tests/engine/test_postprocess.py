"""Batched decoding and NMS: the same boxes as greedy NMS image by image, on random and real outputs."""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest

from streamer.engine.preprocess import InputSpec, Placement, place
from streamer.engine.models.base import clip_boxes, nms
from streamer.engine.models.yolo import UltralyticsYolo
from streamer.engine.postprocess import CLASS_OFFSET, batched_nms, decode_yolo_batch, suppress_sorted
from streamer.frames import Frame
from tests.engine.gpu import requires_gpu


def greedy_keep(boxes: np.ndarray, scores: np.ndarray, valid: np.ndarray, iou_threshold: float) -> np.ndarray:
    """What `nms` keeps among each image's valid boxes, as a (B, K) mask."""
    keep = np.zeros_like(valid)
    for image in range(len(valid)):
        rows = np.flatnonzero(valid[image])
        kept = nms(boxes[image, rows], scores[image, rows], iou_threshold, max_keep=valid.shape[1])
        keep[image, rows[kept]] = True
    return keep


def random_batch(rng: np.random.Generator, count: int, size: int, crowded: bool) -> tuple[np.ndarray, ...]:
    """Boxes around a few centres (crowded: heavy overlaps), scores on a coarse grid (ties), some rows invalid."""
    centres = rng.uniform(0, 200, (count, 2 if crowded else 8, 2))
    which = rng.integers(0, centres.shape[1], (count, size))
    middle = np.take_along_axis(centres, which[:, :, None], axis=1)
    middle += rng.normal(0, 3 if crowded else 20, (count, size, 2))
    half = rng.uniform(5, 40, (count, size, 2))
    boxes = np.concatenate([middle - half, middle + half], axis=2).astype(np.float32)
    scores = (rng.integers(1, 12, (count, size)) / 12).astype(np.float32)
    valid = rng.random((count, size)) < 0.8
    valid[rng.random(count) < 0.2] = False  # now and then an image with no candidate at all
    return boxes, scores, valid


@pytest.mark.parametrize("seed", range(8))
def test_batched_nms_when_batches_are_random_keeps_exactly_what_greedy_nms_keeps(seed):
    rng = np.random.default_rng(seed)
    for trial in range(40):
        count, size = int(rng.integers(1, 6)), int(rng.choice([1, 2, 3, 17, 64, 150]))
        boxes, scores, valid = random_batch(rng, count, size, crowded=trial % 2 == 0)
        threshold = float(rng.choice([0.0, 0.1, 0.3, 0.45, 0.7, 0.95]))

        keep = batched_nms(boxes, scores, valid, threshold)

        np.testing.assert_array_equal(keep, greedy_keep(boxes, scores, valid, threshold))


def test_batched_nms_when_boxes_are_float64_and_shifted_by_class_keeps_what_greedy_nms_keeps():
    rng = np.random.default_rng(42)
    boxes, scores, valid = random_batch(rng, 4, 120, crowded=True)
    shifted = boxes + (rng.integers(0, 3, (4, 120)) * CLASS_OFFSET)[:, :, None]  # float64, as decoding does

    keep = batched_nms(shifted, scores, valid, 0.45)

    np.testing.assert_array_equal(keep, greedy_keep(shifted, scores, valid, 0.45))


def test_batched_nms_when_scores_tie_keeps_the_earlier_box_as_nms_does():
    boxes = np.array([[[0, 0, 10, 10], [1, 0, 11, 10], [0, 1, 10, 11]]], np.float32)
    scores = np.full((1, 3), 0.5, np.float32)

    keep = batched_nms(boxes, scores, np.ones((1, 3), bool), 0.5)

    assert keep.tolist() == [[True, False, False]]
    assert nms(boxes[0], scores[0], 0.5).tolist() == [0]


def test_nms_when_many_scores_tie_orders_them_by_index():
    boxes = np.array([[i * 20, 0, i * 20 + 10, 10] for i in range(200)], np.float32)  # none overlap

    assert nms(boxes, np.full(200, 0.5, np.float32), 0.5, max_keep=200).tolist() == list(range(200))


def test_batched_nms_when_boxes_form_a_chain_settles_one_box_per_round_and_matches_greedy():
    # Each box overlaps only the next one: the worst case for the fixed point, K rounds for K boxes.
    size = 200
    boxes = np.array([[[i * 6, 0, i * 6 + 10, 10] for i in range(size)]], np.float32)  # IoU 4/16 with the next
    scores = np.linspace(1, 0.5, size, dtype=np.float32)[None]
    valid = np.ones((1, size), bool)

    keep = batched_nms(boxes, scores, valid, 0.2)

    assert keep[0].tolist() == [i % 2 == 0 for i in range(size)]
    np.testing.assert_array_equal(keep, greedy_keep(boxes, scores, valid, 0.2))


def test_batched_nms_when_an_image_has_no_candidates_or_there_are_none_keeps_nothing_there():
    boxes = np.zeros((2, 3, 4), np.float32)
    boxes[:, :, 2:] = 10
    valid = np.array([[False, False, False], [True, True, False]])

    keep = batched_nms(boxes, np.ones((2, 3), np.float32), valid, 0.5)
    none = batched_nms(np.zeros((2, 0, 4), np.float32), np.zeros((2, 0), np.float32), np.zeros((2, 0), bool), 0.5)

    assert keep.tolist() == [[False, False, False], [True, False, False]]
    assert none.shape == (2, 0)


def test_suppress_sorted_when_the_batch_is_split_into_passes_gives_the_same_keep(monkeypatch):
    rng = np.random.default_rng(3)
    boxes, _, valid = random_batch(rng, 5, 64, crowded=True)
    whole = suppress_sorted(boxes, valid, 0.45)
    monkeypatch.setattr("streamer.engine.postprocess.PAIRS_PER_PASS", 2 * 64 * 64)  # two images a pass

    np.testing.assert_array_equal(suppress_sorted(boxes, valid, 0.45), whole)


def yolo_outputs(rows: list[list[tuple[float, float, float, float, int, float]]], classes: int = 3) -> np.ndarray:
    """Per image (cx, cy, w, h, class, score) rows -> the export's (B, 4 + classes, anchors) layout."""
    anchors = max(len(image) for image in rows)
    out = np.zeros((len(rows), 4 + classes, anchors), np.float32)
    for image, image_rows in enumerate(rows):
        for anchor, (cx, cy, w, h, cls, score) in enumerate(image_rows):
            out[image, :4, anchor] = cx, cy, w, h
            out[image, 4 + cls, anchor] = score
    return out


def test_decode_yolo_batch_when_classes_differ_never_suppresses_across_classes():
    outputs = yolo_outputs([
        [(50, 50, 20, 20, 0, 0.9), (51, 50, 20, 20, 0, 0.8), (51, 50, 20, 20, 1, 0.7), (50, 50, 20, 20, 2, 0.6)],
        [(50, 50, 20, 20, 1, 0.3), (150, 50, 20, 20, 2, 0.1)],
    ])

    (xyxy, confidence, class_id), second = decode_yolo_batch(outputs, 0.25, 0.45)

    assert class_id.tolist() == [0, 1, 2]
    np.testing.assert_allclose(confidence, [0.9, 0.7, 0.6])
    np.testing.assert_allclose(xyxy[0], [40, 40, 60, 60])
    assert second[2].tolist() == [1]
    assert (xyxy.dtype, confidence.dtype, class_id.dtype) == (np.float32, np.float32, np.int64)


def test_decode_yolo_batch_when_more_than_max_keep_survive_keeps_the_best_max_keep():
    rows = [(i * 30.0, 10, 20, 20, 0, 0.3 + i / 100) for i in range(40)]  # none overlap
    outputs = yolo_outputs([rows, rows[:3]])

    (_, confidence, _), (_, few, _) = decode_yolo_batch(outputs, 0.25, 0.45, max_keep=5)

    np.testing.assert_allclose(confidence, [0.69, 0.68, 0.67, 0.66, 0.65], rtol=1e-6)
    assert len(few) == 3


def test_decode_yolo_batch_when_no_anchor_passes_the_threshold_returns_empty_arrays():
    outputs = yolo_outputs([[(50, 50, 20, 20, 0, 0.1)], [(50, 50, 20, 20, 1, 0.2)]])

    found = decode_yolo_batch(outputs, 0.25, 0.45)

    assert [tuple(array.shape for array in image) for image in found] == [((0, 4), (0,), (0,))] * 2


def per_image_decode(prediction: np.ndarray, confidence: float, iou: float) -> tuple[np.ndarray, ...]:
    """The image-by-image decoding UltralyticsYolo used before batching, in input pixels."""
    scores = prediction[4:]
    class_id = scores.argmax(axis=0)
    best = scores[class_id, np.arange(scores.shape[1])]
    keep = best >= confidence
    cx, cy, w, h = prediction[:4, keep].astype(np.float32)
    xyxy = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    best, class_id = best[keep].astype(np.float32), class_id[keep].astype(np.int64)
    kept = nms(xyxy + (class_id * CLASS_OFFSET)[:, None], best, iou)
    return xyxy[kept], best[kept], class_id[kept]


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, Placement]:
    """A nearest-neighbour letterbox, NCHW float32 in [0, 1], good enough to get real outputs."""
    placement, width, height = place(image.shape[1], image.shape[0], InputSpec(size, size, np.dtype(np.float32)))
    rows = (np.arange(height) * image.shape[0] / height).astype(int)
    cols = (np.arange(width) * image.shape[1] / width).astype(int)
    canvas = np.full((size, size, 3), 114, np.uint8)
    canvas[placement.top : placement.top + height, placement.left : placement.left + width] = image[rows][:, cols]
    return canvas.transpose(2, 0, 1).astype(np.float32) / 255, placement


@pytest.fixture(scope="module")
def real_batch(yolo_path, astronaut):
    """The real YOLOv8n export's raw outputs for a batch of the astronaut and images made from it.

    At confidence 0.25 the images hold 13, 13, 40, 7, 0 and 0 candidates; at 0.001, 139 to 310.
    """
    rng = np.random.default_rng(0)
    tiled = np.tile(astronaut[::2, ::2], (2, 2, 1))  # four small astronauts
    noisy = np.clip(astronaut + rng.normal(0, 40, astronaut.shape), 0, 255).astype(np.uint8)
    black = np.zeros((90, 160, 3), np.uint8)
    images = [astronaut, astronaut[:, ::-1].copy(), tiled, astronaut[100:400, 50:500].copy(), noisy, black]
    inputs, placements = zip(*(letterbox(image, 320) for image in images))
    session = onnxruntime.InferenceSession(str(yolo_path), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {session.get_inputs()[0].name: np.stack(inputs)})[0]
    frames = [Frame("s", i, None, 0.0, image=image) for i, image in enumerate(images)]
    return outputs, list(placements), frames


@pytest.mark.parametrize(("confidence", "iou"), [(0.25, 0.45), (0.05, 0.45), (0.01, 0.7), (0.05, 0.2), (0.001, 0.45)])
def test_decode_yolo_batch_when_given_the_real_exports_outputs_matches_per_image_decoding(real_batch, confidence, iou):
    outputs, _, _ = real_batch

    found = decode_yolo_batch(outputs, confidence, iou)

    assert len(found) == len(outputs)
    for prediction, (xyxy, score, class_id) in zip(outputs, found):
        expected_xyxy, expected_score, expected_class = per_image_decode(prediction, confidence, iou)
        assert class_id.tolist() == expected_class.tolist()
        np.testing.assert_array_equal(score, expected_score)
        np.testing.assert_allclose(xyxy, expected_xyxy, atol=1e-4)


def test_decode_yolo_batch_when_the_outputs_are_float16_matches_per_image_decoding(real_batch):
    outputs = real_batch[0].astype(np.float16)

    for prediction, (xyxy, score, class_id) in zip(outputs, decode_yolo_batch(outputs, 0.05, 0.45)):
        expected_xyxy, expected_score, expected_class = per_image_decode(prediction, 0.05, 0.45)
        assert class_id.tolist() == expected_class.tolist()
        np.testing.assert_array_equal(score, expected_score)
        np.testing.assert_allclose(xyxy, expected_xyxy, atol=1e-4)


def test_yolo_decode_when_given_the_real_exports_outputs_matches_per_image_decoding_in_source_pixels(real_batch):
    outputs, placements, frames = real_batch
    decoder = UltralyticsYolo.__new__(UltralyticsYolo)
    decoder.confidence, decoder.iou = 0.05, 0.45

    found = decoder.decode([outputs], placements, frames)

    assert len(found) == len(frames)
    for prediction, placement, frame, detections in zip(outputs, placements, frames, found):
        xyxy, score, class_id = per_image_decode(prediction, 0.05, 0.45)
        assert detections.class_id.tolist() == class_id.tolist()
        np.testing.assert_array_equal(detections.confidence, score)
        np.testing.assert_allclose(detections.xyxy, clip_boxes(placement.to_source(xyxy), frame), atol=1e-4)


def test_yolo_decode_when_the_outputs_hold_more_images_than_frames_decodes_only_the_frames(real_batch):
    outputs, placements, frames = real_batch  # a static-batch export pads its last batch
    decoder = UltralyticsYolo.__new__(UltralyticsYolo)
    decoder.confidence, decoder.iou = 0.25, 0.45

    found = decoder.decode([outputs], placements[:2], frames[:2])

    assert len(found) == 2


@requires_gpu("cupy")
def test_decode_yolo_batch_when_the_outputs_are_on_the_gpu_matches_the_host(real_batch):
    import cupy

    outputs = real_batch[0]
    for confidence in (0.25, 0.01):
        on_host = decode_yolo_batch(outputs, confidence, 0.45)
        on_device = decode_yolo_batch(cupy.asarray(outputs), confidence, 0.45)
        for host, device in zip(on_host, on_device):
            assert all(isinstance(array, np.ndarray) for array in device)
            assert device[2].tolist() == host[2].tolist()
            np.testing.assert_array_equal(device[1], host[1])
            np.testing.assert_allclose(device[0], host[0], atol=1e-4)
