"""The anonymize stage: faces blurred or pixelated in the frame itself, so the video and snapshot
sinks never see them, while the rest of the picture is left as it was."""

from __future__ import annotations

import dataclasses
import re

import av
import numpy as np
import pytest
from PIL import Image

from streamer.config import schema
from streamer.pipeline.anonymize import AnonymizeStage
from streamer.pipeline.stages import build_stage
from tests.media import moving_face_frame, write_moving_face_clip
from tests.pipeline.helpers import MODEL, file_source, make_result, pipeline_config, read_jsonl, run_pipeline

FRAMES = 12
# Measured on this clip with the default strength: the neighbouring-pixel difference inside the
# face box falls to ~13% of the original (blur) or ~5% (pixelate), the variance to ~37% (blur) or
# 42-85% (pixelate: the blocks keep the face's broad shading). The bounds leave a wide margin.
GRADIENT_BOUND = {"blur": 0.3, "pixelate": 0.15}
VARIANCE_BOUND = {"blur": 0.6, "pixelate": 0.95}
# Outside the box (grown by a quarter of its size: the stage pads by 15%) only H.264 changes pixels:
# ~0.01 mean absolute difference measured on this clip.
OUTSIDE_BOUND = 1.0
SNAPSHOT = re.compile(r"cam_(\d+)_\d{8}T\d{6}\.\d{3}\.jpg")


def sharpness(pixels):
    """Mean absolute difference between horizontally neighbouring pixels."""
    pixels = pixels.astype(np.float64)
    return np.abs(pixels[:, 1:] - pixels[:, :-1]).mean()


def face_region(row):
    """The detected face box of a JSONL row, in whole pixels."""
    (face,) = row["detections"]
    return np.round(face["xyxy"]).astype(int)


def inside(image, box):
    x1, y1, x2, y2 = box
    return image[y1:y2, x1:x2].astype(np.float64)


def outside_mask(shape, box, margin=0.25):
    x1, y1, x2, y2 = box
    dx, dy = int((x2 - x1) * margin), int((y2 - y1) * margin)
    mask = np.ones(shape[:2], bool)
    mask[max(0, y1 - dy) : y2 + dy, max(0, x1 - dx) : x2 + dx] = False
    return mask


def decode(path):
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory, astronaut):
    return write_moving_face_clip(tmp_path_factory.mktemp("anonymize") / "short.mp4", astronaut, frames=FRAMES)


@pytest.fixture(scope="module", params=["blur", "pixelate"])
def anonymized(request, short_clip, centerface, tmp_path_factory):
    """The short clip through `anonymize` (the main model is CenterFace, so its detections are the
    faces): (method, decoded plain video frames, snapshot paths by frame, JSONL rows)."""
    method = request.param
    out = tmp_path_factory.mktemp(method)
    config = pipeline_config(
        file_source(short_clip, "cam"),
        stages=[{"type": "anonymize", "method": method}],
        sinks=[
            {"type": "video", "path": str(out / "plain.mp4"), "annotate": False},
            {"type": "snapshot", "folder": str(out / "shots"), "annotate": False},
            {"type": "jsonl", "path": str(out / "frames.jsonl")},
        ],
    )
    run_pipeline(config, centerface)
    shots = {int(SNAPSHOT.fullmatch(path.name)[1]): path for path in (out / "shots" / "cam").glob("*.jpg")}
    return method, decode(out / "plain.mp4"), shots, read_jsonl(out / "frames.jsonl")


def test_anonymize_stage_when_faces_are_found_hides_them_in_the_video(anonymized, astronaut):
    method, video, _, rows = anonymized

    assert len(video) == len(rows) == FRAMES
    for index, (picture, row) in enumerate(zip(video, rows)):
        box, original = face_region(row), moving_face_frame(astronaut, index)
        assert sharpness(inside(picture, box)) < GRADIENT_BOUND[method] * sharpness(inside(original, box)), index
        assert inside(picture, box).var() < VARIANCE_BOUND[method] * inside(original, box).var(), index


def test_anonymize_stage_leaves_the_picture_outside_the_face_as_it_was(anonymized, astronaut):
    _, video, _, rows = anonymized

    for index, (picture, row) in enumerate(zip(video, rows)):
        original = moving_face_frame(astronaut, index)
        mask = outside_mask(original.shape, face_region(row))
        difference = np.abs(picture.astype(np.int64) - original.astype(np.int64))[mask]
        assert difference.mean() < OUTSIDE_BOUND, index


def test_anonymize_stage_keeps_the_detections_for_the_other_sinks(anonymized):
    _, _, _, rows = anonymized

    assert all(len(row["detections"]) == 1 and row["detections"][0]["class_name"] == "face" for row in rows)


def test_anonymize_stage_hides_faces_in_snapshots_too(anonymized, astronaut):
    method, _, shots, rows = anonymized

    assert sorted(shots) == list(range(FRAMES))
    for index in (0, FRAMES - 1):
        with Image.open(shots[index]) as image:
            picture = np.asarray(image.convert("RGB"))
        box, original = face_region(rows[index]), moving_face_frame(astronaut, index)
        assert sharpness(inside(picture, box)) < GRADIENT_BOUND[method] * sharpness(inside(original, box))


async def test_anonymize_stage_when_the_main_model_is_the_face_detector_reuses_its_detections(centerface):
    stage = await build_stage(schema.AnonymizeStageConfig(), 0, centerface.info)

    assert stage.detector is None  # no second CenterFace loaded


async def test_anonymize_stage_when_the_main_model_is_another_loads_the_face_detector():
    other = dataclasses.replace(MODEL, model_id="acme/people")

    stage = await build_stage(schema.AnonymizeStageConfig(), 0, other)

    assert stage.detector is not None and stage.detector.info.model_id == "centerface"


async def test_anonymize_stage_with_its_own_detector_hides_faces_the_main_model_did_not_report(centerface, astronaut):
    stage = AnonymizeStage(detector=centerface)
    result = make_result(20)  # the main model found nothing (it detects something else)
    original = moving_face_frame(astronaut, 20)
    result.frame.image = original.copy()

    await stage(result)

    (face,) = centerface(original).xyxy.round().astype(int)
    assert stage.hidden == 1
    assert sharpness(inside(result.frame.image, face)) < GRADIENT_BOUND["blur"] * sharpness(inside(original, face))
    mask = outside_mask(original.shape, face)
    assert np.array_equal(result.frame.image[mask], original[mask])
    assert len(result.detections) == 0  # detections are left as they were


async def test_anonymize_stage_hides_only_the_classes_named_and_confident_enough():
    boxes = [(10, 10, 50, 50), (70, 10, 110, 50), (130, 10, 170, 50)]
    result = make_result(0, boxes, class_ids=[0, 1, 0], size=(180, 60))
    result.detections.confidence[:] = [0.9, 0.9, 0.2]  # a face, a person, a doubtful face
    noise = np.random.default_rng(0).integers(0, 256, (60, 180, 3), dtype=np.uint8)
    result.frame.image = noise.copy()

    await AnonymizeStage(classes=["face"], min_confidence=0.3, padding=0.0)(result)

    changed = [not np.array_equal(result.frame.image[10:50, x1:x2], noise[10:50, x1:x2]) for x1, _, x2, _ in boxes]
    assert changed == [True, False, False]


async def test_anonymize_stage_after_a_track_stage_hides_a_face_from_the_first_frame_it_appears(centerface, astronaut):
    # track, then anonymize, with CenterFace as the main model: the stage hides what reaches it.
    track = await build_stage(schema.TrackStageConfig(), 0, centerface.info)
    anonymize = await build_stage(schema.AnonymizeStageConfig(), 1, centerface.info)
    pictures = [np.full((360, 640, 3), 128, np.uint8)] + [moving_face_frame(astronaut, i) for i in (1, 2, 3)]

    hidden = []
    for index, picture in enumerate(pictures):  # frame 0: nobody there yet
        result = make_result(index)
        result.frame.image = picture.copy()
        # what the main model reports for this frame (the runner builds each Result this way)
        result.detections = result.model_detections = centerface(picture)
        for stage in (track, anonymize):
            result = await stage(result)
        if index:
            (face,) = centerface(picture).xyxy.round().astype(int)
            blurred = sharpness(inside(result.frame.image, face)) < GRADIENT_BOUND["blur"] * sharpness(
                inside(picture, face)
            )
            hidden.append(blurred)

    assert hidden == [True, True, True]
