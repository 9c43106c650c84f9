"""Detections index, iterate and compare the way supervision.Detections do."""

from __future__ import annotations

import numpy as np
import pytest

from streamer.frames import Detections
from streamer.masks import CropMasks


def _three(**extra: np.ndarray) -> Detections:
    return Detections(
        xyxy=np.array([[0, 0, 1, 1], [1, 1, 2, 2], [2, 2, 4, 4]], np.float32),
        confidence=np.array([0.9, 0.8, 0.3], np.float32),
        class_id=np.array([0, 1, 0]),
        tracker_id=np.array([7, 8, 9]),
        keypoints=np.arange(3 * 5 * 2, dtype=np.float32).reshape(3, 5, 2),
        data={"name": np.array(["a", "b", "c"], dtype=object)},
        **extra,
    )


def _copy(detections: Detections) -> Detections:
    return detections[np.arange(len(detections))]


def test_detections_index_when_an_integer_gives_one_box():
    detections = _three()

    first, last = detections[0], detections[-1]

    assert len(first) == 1 and first.xyxy.tolist() == [[0, 0, 1, 1]]
    assert last.tracker_id.tolist() == [9]
    assert last.keypoints.shape == (1, 5, 2)
    assert last.data["name"].tolist() == ["c"]
    assert detections[np.int64(1)].class_id.tolist() == [1]


def test_detections_index_when_out_of_range_raises_index_error():
    with pytest.raises(IndexError):
        _three()[3]


def test_detections_index_when_slice_mask_or_index_array_selects_boxes():
    detections = _three()

    assert detections[1:].confidence.tolist() == pytest.approx([0.8, 0.3])
    assert detections[detections.class_id == 0].tracker_id.tolist() == [7, 9]
    assert detections[[2, 0]].data["name"].tolist() == ["c", "a"]
    assert len(detections[np.zeros(0, np.int64)]) == 0


def test_detections_index_when_a_string_reads_data():
    detections = _three()

    assert detections["name"].tolist() == ["a", "b", "c"]
    assert detections["absent"] is None


def test_detections_iterate_when_boxes_yields_supervisions_tuples():
    mask = np.zeros((3, 4, 4), bool)
    mask[1, 1:2, 1:2] = True

    rows = list(_three(mask=mask))

    assert len(rows) == 3
    xyxy, box_mask, confidence, class_id, tracker_id, data = rows[1]
    assert xyxy.tolist() == [1, 1, 2, 2]
    assert box_mask.sum() == 1
    assert confidence == pytest.approx(0.8) and class_id == 1 and tracker_id == 8
    assert data["name"] == "b" and data["keypoints"].shape == (5, 2)


def test_detections_iterate_when_no_tracker_or_mask_yields_none():
    detections = Detections(xyxy=np.zeros((2, 4), np.float32), confidence=np.ones(2, np.float32), class_id=np.zeros(2))

    assert [(mask, tracker_id, data) for _, mask, _, _, tracker_id, data in detections] == [(None, None, {})] * 2
    assert list(Detections.empty()) == []


def test_detections_equal_when_every_field_has_the_same_values():
    detections = _three(mask=np.ones((3, 2, 2), bool))

    assert detections == _copy(detections)
    assert Detections.empty() == Detections.empty()
    assert detections != "not detections"


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d.xyxy.__setitem__((1, 2), 5),
        lambda d: d.confidence.__setitem__(0, 0.1),
        lambda d: d.class_id.__setitem__(2, 4),
        lambda d: d.keypoints.__setitem__((0, 0, 0), -1),
        lambda d: setattr(d, "tracker_id", None),
        lambda d: d.mask.bitmaps.__setitem__(0, ~d.mask.bitmaps[0]),
        lambda d: d.data["name"].__setitem__(1, "z"),
        lambda d: d.data.__setitem__("more", np.zeros(3)),
    ],
    ids=["xyxy", "confidence", "class_id", "keypoints", "tracker_id", "mask", "data value", "data key"],
)
def test_detections_equal_when_one_field_differs_is_false(change):
    detections = _three(mask=np.ones((3, 2, 2), bool))
    other = _copy(detections)

    change(other)

    assert detections != other and not detections == other


def test_detections_when_mask_rows_disagree_raises_value_error():
    with pytest.raises(ValueError, match="mask must have 3 rows"):
        _three(mask=np.ones((2, 4, 4), bool))


def _with_every_field() -> Detections:
    masks = np.zeros((3, 4, 4), bool)
    masks[0, 0, 0] = masks[1, 1, 1] = masks[2, 2:, 2:] = True
    return _three(
        mask=masks,
        keypoint_confidence=np.full((3, 5), 0.5, np.float32),
        class_scores=np.eye(3, dtype=np.float32),
        embeddings=np.arange(6, dtype=np.float32).reshape(3, 2),
        text=np.array(["AB1", "", "ZZ"], dtype=object),
        text_confidence=np.array([0.9, 0.0, 0.7], np.float32),
    )


def test_detections_when_a_dense_mask_is_given_keeps_it_as_crops():
    detections = _with_every_field()

    assert isinstance(detections.mask, CropMasks)
    assert detections.mask.boxes.tolist() == [[0, 0, 1, 1], [1, 1, 2, 2], [2, 2, 4, 4]]


def test_detections_index_when_optional_fields_are_set_keeps_them_in_step():
    picked = _with_every_field()[np.array([False, True, True])]

    assert picked.mask.areas().tolist() == [1, 4]
    assert picked.keypoint_confidence.shape == (2, 5)
    assert picked.class_scores.argmax(axis=1).tolist() == [1, 2]
    assert picked.embeddings.tolist() == [[2, 3], [4, 5]]
    assert picked.text.tolist() == ["", "ZZ"] and picked.text_confidence.tolist() == pytest.approx([0.0, 0.7])


def test_detections_iterate_when_optional_fields_are_set_puts_them_in_data():
    _, mask, _, _, _, data = list(_with_every_field())[2]

    assert mask.shape == (4, 4) and mask.sum() == 4
    assert data["text"] == "ZZ" and data["class_scores"].tolist() == [0, 0, 1]
    assert data["keypoint_confidence"].shape == (5,) and data["embeddings"].tolist() == [4, 5]


@pytest.mark.parametrize("name", ["keypoint_confidence", "class_scores", "embeddings", "text", "text_confidence"])
def test_detections_equal_when_an_optional_field_differs_is_false(name):
    detections = _with_every_field()
    other = _copy(detections)

    setattr(other, name, None)

    assert detections != other and detections == _copy(detections)


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"keypoint_confidence": np.ones((3, 4), np.float32)}, "keypoint_confidence must have shape"),
        ({"class_scores": np.ones(3, np.float32)}, "class_scores must have shape"),
        ({"embeddings": np.ones((2, 8), np.float32)}, "embeddings must have shape"),
        ({"text": np.array(["a", "b"], dtype=object)}, "text must have shape"),
        ({"text_confidence": np.ones((3, 1), np.float32)}, "text_confidence must have shape"),
    ],
    ids=["keypoint_confidence", "class_scores", "embeddings", "text", "text_confidence"],
)
def test_detections_when_an_optional_field_has_the_wrong_shape_raises_value_error(extra, message):
    with pytest.raises(ValueError, match=message):
        _three(**extra)


def test_detections_empty_when_indexed_keeps_no_optional_field():
    empty = Detections.empty()

    assert empty[np.zeros(0, bool)] == empty and empty.mask is None and empty.text is None
