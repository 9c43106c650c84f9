"""Ultralytics instance segmentation: masks decoded at each kept box, as CropMasks in source pixels."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from streamer.engine import AutoModel
from streamer.engine.models.yolo_segment import UltralyticsSegment
from streamer.engine.postprocess import crop_masks
from streamer.engine.preprocess import Placement
from streamer.frames import Frame
from streamer.masks import CropMasks
from tests.engine.ultralytics_exports import asset, exported


def _proto() -> np.ndarray:
    """Two 20 x 20 prototypes (an 80 x 80 input at stride 4): the first +1 over cells rows 5-9,
    columns 5-14 (input pixels x 20..60, y 20..40) and -1 elsewhere, the second noise."""
    proto = np.full((2, 20, 20), -1.0, np.float32)
    proto[0, 5:10, 5:15] = 1.0
    proto[1] = np.random.default_rng(0).normal(size=(20, 20))
    return proto


def upsampled(proto: np.ndarray, coefficients: np.ndarray, size: tuple[int, int], gain: float, offset) -> np.ndarray:
    """The whole mask logits at every source pixel (width, height), bilinear with edges clamped: what
    upsampling the full mask would give, the reference the per-box windows must reproduce."""
    logits = np.tensordot(coefficients, proto, axes=1)
    xs = np.clip(((np.arange(size[0]) + 0.5) * gain + offset[0]) / 4 - 0.5, 0, logits.shape[1] - 1)
    ys = np.clip(((np.arange(size[1]) + 0.5) * gain + offset[1]) / 4 - 0.5, 0, logits.shape[0] - 1)
    along = np.stack([np.interp(xs, np.arange(logits.shape[1]), row) for row in logits])
    return np.stack([np.interp(ys, np.arange(logits.shape[0]), column) for column in along.T], axis=1)


def test_crop_masks_when_the_prototype_is_a_rectangle_gives_it_inside_the_box():
    bounds = np.array([[10, 10, 70, 50]], np.int32)
    coefficients = np.array([1.0, 0.0], np.float32)

    (bitmap,) = crop_masks(_proto(), coefficients[None], bounds, 1.0, (0, 0))

    np.testing.assert_array_equal(bitmap, upsampled(_proto(), coefficients, (80, 80), 1.0, (0, 0))[10:50, 10:70] > 0)
    assert bitmap[20 - 10 : 40 - 10, 20 - 10 : 60 - 10].sum() == 20 * 40 - 4  # bilinear rounds the 4 corners
    assert bitmap.sum() == 20 * 40 - 4


def test_crop_masks_when_the_frame_was_letterboxed_maps_source_pixels_through_the_placement():
    bounds = np.array([[0, 0, 150, 100], [30, 30, 30, 60]], np.int32)  # the second box has no width
    coefficients = np.array([[2.0, 0.3]] * 2, np.float32)

    wide, empty = crop_masks(_proto(), coefficients, bounds, 0.5, (8, 0))

    expected = upsampled(_proto(), coefficients[0], (150, 100), 0.5, (8, 0)) > 0
    np.testing.assert_array_equal(wide, expected)
    columns, rows = np.flatnonzero(wide.any(axis=0)), np.flatnonzero(wide.any(axis=1))
    assert abs(columns[0] - 24) <= 2 and abs(columns[-1] + 1 - 104) <= 2  # input x = 0.5 * source x + 8 in 20..60
    assert abs(rows[0] - 40) <= 2 and abs(rows[-1] + 1 - 80) <= 2
    assert empty.shape == (30, 0)


def test_crop_masks_reads_only_the_prototype_cells_under_the_box():
    proto = _proto()
    proto[:, :, :7] = np.nan  # left of the box (x >= 30 reads cells from 7 on): never read
    bounds = np.array([[30, 10, 70, 50]], np.int32)
    coefficients = np.array([1.0, 0.5], np.float32)

    (bitmap,) = crop_masks(proto, coefficients[None], bounds, 1.0, (0, 0))

    np.testing.assert_array_equal(bitmap, upsampled(_proto(), coefficients, (80, 80), 1.0, (0, 0))[10:50, 30:70] > 0)


def _decoder() -> UltralyticsSegment:
    decoder = UltralyticsSegment.__new__(UltralyticsSegment)
    decoder.confidence, decoder.iou = 0.25, 0.45
    return decoder


def test_yolo_segment_decode_when_given_crafted_outputs_masks_each_kept_box_at_the_box():
    rows = np.zeros((1, 4 + 2 + 2, 3), np.float32)  # box, 2 classes, 2 mask coefficients per anchor
    rows[0, :, 0] = [40, 30, 60, 40, 0.9, 0.0, 1.0, 0.0]  # box 10..70 x 10..50, the rectangle's mask
    rows[0, :, 1] = [41, 30, 60, 40, 0.6, 0.0, -1.0, 0.0]  # overlaps the first, same class: suppressed
    rows[0, :, 2] = [40, 30, 20, 20, 0.0, 0.7, -1.0, 0.0]  # the other class: kept, the mask's inverse
    frame = Frame("s", 0, None, 0.0, image=np.zeros((80, 80, 3), np.uint8))

    found = _decoder().decode([rows, _proto()[None]], [Placement(1.0, 0, 0)], [frame])[0]

    assert found.class_id.tolist() == [0, 1]
    assert isinstance(found.mask, CropMasks) and found.mask.frame_size == (80, 80)
    np.testing.assert_array_equal(found.mask.boxes, [[10, 10, 70, 50], [30, 20, 50, 40]])
    dense = found.mask.dense()
    assert dense[0].sum() == 40 * 20 - 4 and dense[0, 21:39, 21:59].all()
    assert not dense[1].any()  # the rectangle covers all of the second box, whose mask is its inverse


@pytest.fixture(scope="module")
def segment():
    return AutoModel.from_pretrained(str(exported("yolov8n-seg")), confidence=0.0, iou=0.3)


def test_yolo_segment_when_loaded_by_path_reads_its_task_and_classes_from_the_metadata(segment):
    assert isinstance(segment, UltralyticsSegment)
    assert (segment.info.architecture, segment.info.task) == ("yolo", "instance-segmentation")
    assert len(segment.info.class_names) == 80 and segment.info.input_size == (320, 320)


def test_yolo_segment_when_the_untrained_export_runs_gives_one_crop_mask_per_box_within_the_frame(segment):
    image = np.asarray(Image.open(asset("bus.jpg")).convert("RGB"))[::2, ::2].copy()

    found = segment(image)

    assert len(found) > 0 and len(found.mask) == len(found)
    assert found.mask.frame_size == (image.shape[1], image.shape[0])
    np.testing.assert_array_equal(found.mask.boxes, CropMasks.box_bounds(found.xyxy, found.mask.frame_size))
    for (x0, y0, x1, y1), bitmap in zip(found.mask.boxes, found.mask.bitmaps):
        assert bitmap.shape == (y1 - y0, x1 - x0) and bitmap.dtype == bool
    kept = found[found.confidence >= np.median(found.confidence)]
    assert len(kept.mask) == len(kept)
