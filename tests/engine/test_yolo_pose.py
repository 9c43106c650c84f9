"""Ultralytics pose: the real yolo11n-pose export finds people's 17 keypoints as Ultralytics does."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from PIL import Image

from streamer.engine import AutoModel
from streamer.engine.models.yolo_pose import COCO_KEYPOINTS, COCO_SKELETON, UltralyticsPose
from streamer.engine.preprocess import Placement
from streamer.frames import Frame
from tests.engine.test_centerface import iou
from tests.engine.ultralytics_exports import asset, exported, ultralytics_predictions


@pytest.fixture(scope="module")
def pose():
    return AutoModel.from_pretrained(str(exported("yolo11n-pose")))


@pytest.fixture(scope="module")
def zidane() -> np.ndarray:
    return np.asarray(Image.open(asset("zidane.jpg")).convert("RGB"))


def test_yolo_pose_when_loaded_by_path_reads_its_task_and_keypoints_from_the_metadata(pose):
    assert isinstance(pose, UltralyticsPose)
    assert (pose.info.architecture, pose.info.task) == ("yolo", "keypoint-detection")
    assert pose.info.class_names == ("person",)
    assert pose.info.input_size == (320, 320)
    assert pose.info.keypoint_names == COCO_KEYPOINTS and len(COCO_KEYPOINTS) == 17
    assert pose.info.skeleton == COCO_SKELETON
    assert all(0 <= a < 17 and 0 <= b < 17 for a, b in pose.info.skeleton)


@pytest.mark.parametrize("photo", ["zidane.jpg", "bus.jpg"])
def test_yolo_pose_when_given_a_real_photo_finds_the_people_and_keypoints_ultralytics_finds(pose, photo):
    image = np.asarray(Image.open(asset(photo)).convert("RGB"))
    expected = ultralytics_predictions("yolo11n-pose", asset(photo))

    found = pose(image)

    assert len(found) == len(expected["xyxy"]) >= 2
    assert found.keypoints.shape == (len(found), 17, 2) and found.keypoint_confidence.shape == (len(found), 17)
    for box, confidence, points in zip(expected["xyxy"], expected["confidence"], np.array(expected["keypoints"])):
        match = max(range(len(found)), key=lambda i: iou(found.xyxy[i], box))
        assert iou(found.xyxy[match], box) > 0.95
        assert abs(found.confidence[match] - confidence) < 0.05
        seen = points[:, 2] > 0.5
        error = np.linalg.norm(found.keypoints[match] - points[:, :2], axis=1)[seen]
        assert error.mean() < 10  # source pixels: under 2.5 input pixels at 320 (the resizers differ)
        np.testing.assert_allclose(found.keypoint_confidence[match], points[:, 2], atol=0.2)


def test_yolo_pose_when_given_zidane_sees_most_joints_in_order_from_nose_to_hips(pose, zidane):
    found = pose(zidane)

    person = found[int(found.confidence.argmax())]
    points, scores = person.keypoints[0], person.keypoint_confidence[0]
    joint = {name: points[i] for i, name in enumerate(pose.info.keypoint_names)}
    assert (scores > 0.5).sum() >= 9
    assert scores[pose.info.keypoint_names.index("nose")] > 0.8
    x1, y1, x2, y2 = person.xyxy[0]
    assert x1 <= joint["nose"][0] <= x2 and y1 <= joint["nose"][1] <= y2
    assert joint["nose"][1] < joint["left_shoulder"][1] < joint["left_hip"][1]
    assert joint["nose"][1] < joint["right_shoulder"][1] < joint["right_hip"][1]


def test_yolo_pose_when_the_export_names_its_keypoints_takes_those_names_and_no_coco_skeleton(tmp_path):
    model = onnx.load(str(exported("yolo11n-pose")))
    names = [f"point{i}" for i in range(17)]
    onnx.helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props}, "kpt_names": repr({0: names})})
    onnx.save(model, str(tmp_path / "named.onnx"))

    named = AutoModel.from_pretrained(str(tmp_path / "named.onnx"))

    assert named.info.keypoint_names == tuple(names) and named.info.skeleton == ()


def _decoder() -> UltralyticsPose:
    decoder = UltralyticsPose.__new__(UltralyticsPose)
    decoder.confidence, decoder.iou, decoder.keypoints_shape = 0.25, 0.45, (2, 3)
    return decoder


def test_yolo_pose_decode_when_given_crafted_rows_undoes_the_letterbox_for_boxes_and_keypoints():
    rows = np.zeros((1, 4 + 1 + 2 * 3, 3), np.float32)  # 3 anchors: box, person score, 2 keypoints (x, y, score)
    rows[0, :, 0] = [100, 120, 40, 80, 0.9, 90, 100, 0.95, 110, 150, 0.2]
    rows[0, :, 1] = [101, 120, 40, 80, 0.8, 0, 0, 0, 0, 0, 0]  # the same person, less sure: suppressed
    rows[0, :, 2] = [200, 120, 40, 80, 0.1, 0, 0, 0, 0, 0, 0]  # below the threshold
    frame = Frame("s", 0, None, 0.0, image=np.zeros((300, 600, 3), np.uint8))

    found = _decoder().decode([rows], [Placement(0.5, 0, 10)], [frame])[0]

    assert len(found) == 1
    np.testing.assert_allclose(found.xyxy[0], [160, 140, 240, 300])
    np.testing.assert_allclose(found.keypoints[0], [[180, 180], [220, 280]])
    np.testing.assert_allclose(found.keypoint_confidence[0], [0.95, 0.2])


def test_yolo_pose_decode_when_a_batch_holds_several_images_gives_each_its_own_keypoints():
    rows = np.zeros((2, 4 + 1 + 2 * 3, 2), np.float32)
    rows[0, :, 0] = [50, 50, 20, 20, 0.9, 41, 42, 0.5, 43, 44, 0.6]
    rows[0, :, 1] = [150, 50, 20, 20, 0.8, 141, 142, 0.7, 143, 144, 0.8]  # apart from the first: kept
    rows[1, :, 0] = [10, 10, 5, 5, 0.1, 0, 0, 0, 0, 0, 0]  # below the threshold
    rows[1, :, 1] = [90, 90, 20, 20, 0.7, 91, 92, 0.9, 93, 94, 0.3]
    frames = [Frame("s", i, None, 0.0, image=np.zeros((200, 200, 3), np.uint8)) for i in range(2)]

    first, second = _decoder().decode([rows], [Placement(1.0, 0, 0)] * 2, frames)

    np.testing.assert_allclose(first.keypoints, [[[41, 42], [43, 44]], [[141, 142], [143, 144]]])
    np.testing.assert_allclose(second.keypoints, [[[91, 92], [93, 94]]])
    np.testing.assert_allclose(second.keypoint_confidence, [[0.9, 0.3]])
