"""Which family an Ultralytics export is, read from its own metadata when it is resolved by path."""

from __future__ import annotations

import onnx
import pytest

from streamer.engine.entities import LoadOptions
from streamer.engine.models import is_registered
from streamer.engine.models.yolo_metadata import keypoint_names, keypoint_shape, ultralytics_family
from streamer.engine.resolve import local_document
from streamer.errors import UnknownArchitectureError
from tests.engine.ultralytics_exports import exported


@pytest.mark.parametrize(
    ("name", "architecture", "task"),
    [
        ("yolo11n-pose", "yolo", "keypoint-detection"),
        ("yolov8n-seg", "yolo", "instance-segmentation"),
        ("yolov8n-cls", "yolo", "classification"),
        ("yolov8n-obb", "yolo", "oriented-object-detection"),
        ("yolov10n", "yolo-end2end", "object-detection"),
        ("yolo26n", "yolo-end2end", "object-detection"),
        ("rtdetr-l", "rtdetr", "object-detection"),
        ("yolo26n-seg", "yolo-end2end", "instance-segmentation"),
        ("yolo26n-pose", "yolo-end2end", "keypoint-detection"),
        ("yolo26n-obb", "yolo-end2end", "oriented-object-detection"),
    ],
)
def test_local_document_when_given_an_ultralytics_export_takes_architecture_and_task_from_it(name, architecture, task):
    document = local_document(exported(name), LoadOptions())

    assert (document.architecture, document.task) == (architecture, task)
    assert is_registered(architecture, task, "onnxruntime")


@pytest.mark.parametrize(
    ("metadata", "family"),
    [
        ({"author": "Ultralytics", "task": "detect"}, ("yolo", "object-detection")),
        ({"author": "Ultralytics", "task": "detect", "head": "v10Detect"}, ("yolo-end2end", "object-detection")),
        ({"author": "Ultralytics", "task": "detect", "head": "v10Detect", "end2end": "False"},
         ("yolo", "object-detection")),  # exported with its one-to-many head (nms left as None)
        ({"author": "Ultralytics", "task": "detect", "description": "Ultralytics RT-DETR-l model"},
         ("rtdetr", "object-detection")),
        ({"author": "Ultralytics", "task": "segment", "end2end": "True"}, ("yolo-end2end", "instance-segmentation")),
        ({"author": "Ultralytics", "task": "depth"}, ("yolo", "depth")),
        ({"author": "someone else", "task": "detect"}, None),
    ],
)
def test_ultralytics_family_when_metadata_comes_from_other_versions_or_heads(metadata, family):
    assert ultralytics_family(metadata) == family


def test_keypoint_shape_when_the_metadata_has_none_is_cocos_and_when_unreadable_raises():
    assert keypoint_shape({}, "m") == (17, 3)
    assert keypoint_shape({"kpt_shape": "[5, 2]"}, "m") == (5, 2)
    with pytest.raises(UnknownArchitectureError, match="kpt_shape"):
        keypoint_shape({"kpt_shape": "[5,"}, "m")


def test_keypoint_names_when_the_export_names_them_per_class_are_the_first_classs():
    assert keypoint_names({"kpt_names": "{0: ['beak', 'tail'], 1: ['x', 'y']}"}, "m") == ("beak", "tail")
    assert keypoint_names({}, "m") == ()
    with pytest.raises(UnknownArchitectureError, match="kpt_names"):
        keypoint_names({"kpt_names": "{0: "}, "m")


def _plain_onnx(path):
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])], "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 32, 32])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3, 32, 32])],
    )
    onnx.save(onnx.helper.make_model(graph), str(path))
    return path


def test_local_document_when_an_architecture_is_given_for_a_file_without_metadata_uses_its_first_task(tmp_path):
    document = local_document(_plain_onnx(tmp_path / "plain.onnx"), LoadOptions(architecture="yolo"))

    assert (document.architecture, document.task) == ("yolo", "object-detection")


def test_local_document_when_a_file_has_no_metadata_and_no_architecture_is_given_raises(tmp_path):
    with pytest.raises(UnknownArchitectureError, match="cannot tell its architecture"):
        local_document(_plain_onnx(tmp_path / "plain.onnx"), LoadOptions())
