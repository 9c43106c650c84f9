"""INT8 packages: nudenet's YOLOv8n quantized on a tiny face clip, loaded back, negotiated."""

from __future__ import annotations

import anyio
import msgspec
import numpy as np
import pytest

from streamer.engine import AutoModel
from streamer.engine.entities import ComputeEnvironment, LoadOptions, ModelDocument
from streamer.engine.negotiation import negotiate
from streamer.engine.providers.local import MANIFEST, read_model_folder
from streamer.engine.quantize import agreement_of, calibration_frames, quantize_model
from streamer.errors import NoCompatiblePackageError, SourceOpenError
from streamer.frames import Detections
from tests.media import moving_face_frame, write_moving_face_clip

CPU_ONNX = ComputeEnvironment(onnxruntime_version="1.20.0", onnxruntime_providers=["CPUExecutionProvider"])
INT8_ALLOWED = ["fp32", "int8"]


@pytest.fixture(scope="module")
def quantized(tmp_path_factory, astronaut):
    """nudenet-320n quantized on 6 frames of the astronaut's face moving across a grey frame."""
    folder = tmp_path_factory.mktemp("quantized")
    clip = write_moving_face_clip(folder / "face.mp4", astronaut, frames=6)
    return anyio.run(lambda: quantize_model("nudenet-320n", clip, out_dir=folder / "nudenet-320n", frames=6))


def test_quantize_when_calibrated_on_a_face_clip_reports_agreement_with_fp32(quantized):
    agreement = quantized.agreement

    assert quantized.frames == 6
    assert agreement.fp32_boxes >= 6  # the face, in every frame
    assert agreement.fp32_matched >= 0.8 and agreement.int8_matched >= 0.8
    assert quantized.int8_ms > 0 and quantized.fp32_ms > 0
    assert "fp32 boxes matched by int8" in str(quantized)


def test_quantize_writes_a_local_folder_of_the_fp32_and_the_int8_package(quantized):
    document = read_model_folder(quantized.folder)

    assert document.model_id == "nudenet-320n"
    assert [(p.package_id, p.quantization) for p in document.packages] == [
        ("nudenet-3.4.2", "fp32"),
        ("nudenet-3.4.2-int8", "int8"),
    ]
    int8 = document.packages[1]
    assert int8.requirements.device == "cpu"
    assert int8.extra["agreement"]["fp32_boxes"] == quantized.agreement.fp32_boxes
    for package in document.packages:
        for spec in package.files:
            assert (quantized.folder / package.package_id / spec.name).stat().st_size == spec.size


def test_quantized_package_when_int8_is_allowed_is_chosen_and_finds_the_face(quantized, astronaut):
    model = AutoModel.from_pretrained(str(quantized.folder), quantization=INT8_ALLOWED, batch_size=1)

    found = model(moving_face_frame(astronaut, 3))

    assert model.info.package == "nudenet-3.4.2-int8"
    assert model.info.class_names[int(found.class_id[0])] == "FACE_FEMALE"


def test_quantized_package_when_int8_is_not_allowed_is_rejected_with_the_reason(quantized):
    described = AutoModel.describe_model(str(quantized.folder))
    model = AutoModel.from_pretrained(str(quantized.folder), batch_size=1)

    assert model.info.package == "nudenet-3.4.2"
    assert 'used only when allowed: quantization = ["fp32", "int8"]' in str(described)


def test_negotiation_when_only_int8_is_there_and_not_allowed_names_why():
    document = msgspec.convert(
        {
            "model_id": "m",
            "task": "object-detection",
            "architecture": "yolo",
            "packages": [{"package_id": "int8", "backend": "onnxruntime", "format": "onnx", "quantization": "int8"}],
        },
        ModelDocument,
    )

    with pytest.raises(NoCompatiblePackageError, match="int8 trades accuracy for speed"):
        negotiate(document, LoadOptions(), CPU_ONNX)
    with pytest.raises(NoCompatiblePackageError, match=r"int8 is not among the quantizations allowed \(fp32, fp16\)"):
        negotiate(document, LoadOptions(quantization=["fp32", "fp16"]), CPU_ONNX)
    assert negotiate(document, LoadOptions(quantization=INT8_ALLOWED), CPU_ONNX).chosen.package_id == "int8"


def test_agreement_when_boxes_move_or_change_class_counts_only_matches():
    def boxes(rows, classes):
        return Detections(xyxy=np.array(rows, np.float32), confidence=np.ones(len(rows), np.float32),
                          class_id=np.array(classes, np.int64))

    fp32 = [boxes([[0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]], [0, 0, 1])]
    int8 = [boxes([[1, 1, 10, 10], [20, 20, 30, 30], [90, 90, 99, 99], [0, 0, 10, 10]], [0, 1, 1, 0])]

    agreement = agreement_of(fp32, int8)

    assert (agreement.fp32_boxes, agreement.int8_boxes, agreement.matched) == (3, 4, 1)
    assert agreement.fp32_matched == pytest.approx(1 / 3) and agreement.int8_matched == pytest.approx(1 / 4)


def test_calibration_frames_when_the_clip_is_not_a_video_raises_source_open_error(tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")

    with pytest.raises(SourceOpenError, match="cannot decode"):
        calibration_frames(text, 4)


def test_quantized_folder_manifest_is_the_one_the_local_provider_reads(quantized):
    raw = msgspec.json.decode((quantized.folder / MANIFEST).read_bytes())

    assert all("url" not in spec for package in raw["packages"] for spec in package["files"])


def test_quantize_when_given_an_onnx_file_by_path_names_the_folder_and_model_after_the_file(
    tmp_path, yolo_path, astronaut
):
    clip = write_moving_face_clip(tmp_path / "face.mp4", astronaut, frames=3)

    report = anyio.run(lambda: quantize_model(str(yolo_path), clip, out_dir=tmp_path / "out", frames=3))
    model = AutoModel.from_pretrained(str(report.folder), quantization=INT8_ALLOWED, batch_size=1)

    assert report.model_id == "320n"
    assert model.info.package == "file-onnx-int8"
    assert len(model(moving_face_frame(astronaut, 1))) >= 1
