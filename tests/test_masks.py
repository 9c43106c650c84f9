"""CropMasks hold each mask cropped to its box and give the full-frame forms on demand."""

from __future__ import annotations

import numpy as np
import pytest

from streamer.masks import CropMasks


def _dense() -> np.ndarray:
    masks = np.zeros((3, 5, 6), bool)  # frames 6 wide, 5 high
    masks[0, 1:3, 2:5] = True  # a 3x2 block
    masks[1, 4, 0] = masks[1, 0, 5] = True  # two opposite corners
    return masks


def test_crop_masks_from_dense_when_round_tripped_keeps_every_pixel():
    masks = CropMasks.from_dense(_dense())

    assert masks.frame_size == (6, 5) and len(masks) == 3
    assert masks.boxes.tolist() == [[2, 1, 5, 3], [0, 0, 6, 5], [0, 0, 0, 0]]
    np.testing.assert_array_equal(masks.dense(), _dense())
    np.testing.assert_array_equal(list(masks)[1], _dense()[1])


def test_crop_masks_areas_and_centroids_when_masks_are_set_count_their_pixels():
    masks = CropMasks.from_dense(_dense())

    assert masks.areas().tolist() == [6, 2, 0]
    centroids = masks.centroids()
    assert centroids[0].tolist() == pytest.approx([3.5, 2.0])
    assert centroids[1].tolist() == pytest.approx([3.0, 2.5])
    assert np.isnan(centroids[2]).all()


def _decode_coco(rle: dict) -> np.ndarray:
    height, width = rle["size"]
    flat = np.zeros(height * width, bool)
    position, value = 0, False
    for count in rle["counts"]:
        flat[position : position + count] = value
        position, value = position + count, not value
    assert position == height * width
    return flat.reshape(width, height).T  # COCO runs go down the columns


def test_crop_masks_rle_when_decoded_as_coco_gives_the_dense_masks():
    masks = CropMasks.from_dense(_dense())

    rles = masks.rle()

    assert [rle["size"] for rle in rles] == [[5, 6]] * 3
    for rle, dense in zip(rles, _dense()):
        np.testing.assert_array_equal(_decode_coco(rle), dense)
    assert rles[2]["counts"] == [30] and rles[1]["counts"][0] == 4


def test_crop_masks_index_when_selecting_keeps_boxes_and_bitmaps_together():
    masks = CropMasks.from_dense(_dense())

    assert masks[1].areas().tolist() == [2]
    assert masks[-1].boxes.tolist() == [[0, 0, 0, 0]]
    assert masks[np.array([True, False, True])].areas().tolist() == [6, 0]
    assert masks[[2, 0]] == CropMasks.from_dense(_dense()[[2, 0]])


def test_crop_masks_equal_when_the_same_pixels_are_cropped_differently():
    box_cropped = CropMasks(np.array([[0, 0, 6, 5]]), [_dense()[0]], (6, 5))

    assert box_cropped == CropMasks.from_dense(_dense()[:1])
    assert box_cropped != CropMasks.from_dense(_dense()[1:2])
    assert box_cropped != "masks"


def test_crop_masks_box_bounds_when_boxes_are_fractional_floor_ceil_and_clip():
    bounds = CropMasks.box_bounds(np.array([[1.2, 0.5, 3.1, 2.9], [-4, 2, 90, 9]], np.float32), (6, 5))

    assert bounds.tolist() == [[1, 0, 4, 3], [0, 2, 6, 5]]


@pytest.mark.parametrize(
    "boxes, bitmaps, message",
    [
        ([[0, 0, 2, 2]], [], "1 boxes but 0 bitmaps"),
        ([[0, 0, 2, 2]], [np.ones((3, 2), bool)], "its box needs"),
        ([[4, 0, 8, 2]], [np.ones((2, 4), bool)], "not inside"),
    ],
    ids=["count", "shape", "outside"],
)
def test_crop_masks_when_boxes_and_bitmaps_disagree_raises_value_error(boxes, bitmaps, message):
    with pytest.raises(ValueError, match=message):
        CropMasks(np.array(boxes), bitmaps, (6, 5))
