"""The track stage with an appearance model: a face that CenterFace loses behind an occluder for
longer than `lost_frames` keeps its id when it comes out (motion alone gives it a new one), and
something else coming out does not take it."""

from __future__ import annotations

import numpy as np
import pytest

from streamer.config.schema import TrackStageConfig
from streamer.errors import ParameterError
from streamer.frames import Detections, Frame, Result
from streamer.pipeline.stages import build_stage
from streamer.pipeline.tracking import TrackStage
from tests.media import FACE_CROP, MOVING_SIZE

FRAMES, STEP, TOP = 40, 12, 110  # the sprite's left edge is 30 + STEP * index
OCCLUDER = (250, 420)  # x range of a textured post the sprite passes behind
LOST_FRAMES = 5


def sprite_box(index: int, sprite: np.ndarray, top: int = TOP) -> tuple[int, int, int, int]:
    left = 30 + STEP * index
    return left, top, left + sprite.shape[1], top + sprite.shape[0]


def occluded_frame(index: int, *placed: tuple[np.ndarray, int]) -> Frame:
    """Sprites on grey, each (sprite, top) at `sprite_box(index, sprite, top)`, behind a green post."""
    width, height = MOVING_SIZE
    image = np.full((height, width, 3), 128, np.uint8)
    for sprite, top in placed:
        x1, y1, x2, y2 = sprite_box(index, sprite, top)
        image[y1:y2, x1:x2] = sprite
    noise = np.random.default_rng(index).integers(0, 40, (height, OCCLUDER[1] - OCCLUDER[0], 1))
    image[:, OCCLUDER[0] : OCCLUDER[1]] = noise + np.array([60, 90, 60])
    return Frame("cam", index, index / 15, 1.7e9 + index / 15, image=image)


@pytest.fixture(scope="module")
def sprites(astronaut):
    from skimage import data

    x1, y1, x2, y2 = FACE_CROP
    face = np.ascontiguousarray(astronaut[y1:y2, x1:x2])
    cat = np.ascontiguousarray(data.chelsea()[40 : 40 + face.shape[0], 150 : 150 + face.shape[1]])
    return face, cat


@pytest.fixture(scope="module")
def crossing(sprites, centerface):
    """The face crossing behind the post: frames and what CenterFace finds in each."""
    frames = [occluded_frame(i, (sprites[0], TOP)) for i in range(FRAMES)]
    return frames, centerface.detect(frames)


@pytest.fixture(scope="module")
def embedder():
    from streamer.engine import AutoModel

    return AutoModel.from_pretrained("mobilenetv2-reid")


async def ids_through(stage, frames, found, model_info):
    ids = []
    for frame, detections in zip(frames, found):
        result = await stage(Result(frame, detections, model_info))
        ids.append(result.detections.tracker_id.tolist())
    return ids


def hidden_frames(found):
    """The run of frames in which the detector found nothing (the face behind the post)."""
    empty = [i for i, detections in enumerate(found) if not len(detections)]
    assert empty and empty == list(range(empty[0], empty[-1] + 1))
    return empty


async def test_track_when_a_face_is_hidden_longer_than_lost_frames_motion_alone_gives_it_a_new_id(
    crossing, centerface
):
    frames, found = crossing

    ids = await ids_through(TrackStage(lost_frames=LOST_FRAMES), frames, found, centerface.info)

    hidden = hidden_frames(found)
    assert len(hidden) > LOST_FRAMES + 2
    before = {i for frame in ids[: hidden[0]] for i in frame}
    after = {i for frame in ids[hidden[-1] + 1 :] for i in frame}
    assert len(before) == 1 and len(after) == 1 and before != after


async def test_track_when_a_face_is_hidden_longer_than_lost_frames_appearance_gives_its_id_back(
    crossing, centerface, embedder
):
    frames, found = crossing
    stage = TrackStage(lost_frames=LOST_FRAMES, appearance_model="mobilenetv2-reid", embedder=embedder)

    ids = await ids_through(stage, frames, found, centerface.info)

    hidden = hidden_frames(found)
    before, back = ids[: hidden[0]], [frame for frame in ids[hidden[-1] + 1 :] if frame]
    assert all(frame == ids[0] for frame in before)
    assert len(back) >= len(frames) - hidden[-1] - 2  # followed again
    # Coming out, the face is half hidden: its young track may have a fresh id for a frame or two
    # until its crop looks enough like the gallery; then it takes the old id back.
    assert sum(frame != ids[0] for frame in back) <= 2
    assert all(frame == ids[0] for frame in back[2:])


async def test_track_when_something_else_comes_out_from_behind_the_occluder_gives_it_a_new_id(
    crossing, sprites, centerface, embedder
):
    frames, found = crossing
    hidden = hidden_frames(found)
    # From the hidden run on, the cat's head moves along the face's path; boxes where it is in full view.
    swapped = [occluded_frame(i, (sprites[1], TOP)) for i in range(hidden[0], FRAMES)]
    cat_boxes = [sprite_box(frame.index, sprites[1]) for frame in swapped]
    cat_found = [boxes_in_view(box) for box in cat_boxes]
    stage = TrackStage(lost_frames=LOST_FRAMES, appearance_model="mobilenetv2-reid", embedder=embedder)

    ids = await ids_through(stage, frames[: hidden[0]] + swapped, found[: hidden[0]] + cat_found, centerface.info)

    face = {i for frame in ids[: hidden[0]] for i in frame}
    cat = {i for frame in ids[hidden[0] :] for i in frame}
    assert len(face) == 1 and len(cat) == 1 and face.isdisjoint(cat)


def boxes_in_view(*boxes: tuple[int, int, int, int]) -> Detections:
    """A detector that sees a sprite only when no part of it is behind the post."""
    rows = [box for box in boxes if not (box[2] > OCCLUDER[0] and box[0] < OCCLUDER[1])]
    return Detections(
        xyxy=np.array(rows, np.float32).reshape(-1, 4),
        confidence=np.full(len(rows), 0.9, np.float32),
        class_id=np.zeros(len(rows), np.int64),
    )


async def test_track_when_two_objects_come_out_in_each_others_places_each_takes_back_its_own_id(
    sprites, centerface, embedder
):
    face, cat = sprites
    # The face above the cat until both are behind the post; they come out the other way round.
    def placed(index):
        return [(face, 10), (cat, 190)] if index < FRAMES // 2 else [(cat, 10), (face, 190)]

    frames = [occluded_frame(i, *placed(i)) for i in range(FRAMES)]
    found = [boxes_in_view(*(sprite_box(i, sprite, top) for sprite, top in placed(i))) for i in range(FRAMES)]
    stage = TrackStage(lost_frames=LOST_FRAMES, appearance_model="mobilenetv2-reid", embedder=embedder)

    ids = await ids_through(stage, frames, found, centerface.info)

    hidden = hidden_frames(found)
    assert len(hidden) > LOST_FRAMES
    top_before, bottom_before = ids[0]  # rows come in the detector's order: top, then bottom
    assert all(frame == [top_before, bottom_before] for frame in ids[: hidden[0]])
    back = [frame for frame in ids[hidden[-1] + 1 :] if frame]  # a new track shows from its second frame
    assert len(back) == FRAMES - hidden[-1] - 2
    assert all(frame == [bottom_before, top_before] for frame in back)


async def test_track_when_the_config_names_an_appearance_model_builds_the_stage_with_it_loaded():
    stage = await build_stage(TrackStageConfig(appearance_model="mobilenetv2-reid", gallery_frames=90))

    assert isinstance(stage, TrackStage)
    assert stage.embedder.info.model_id == "mobilenetv2-reid" and stage.embedder.info.task == "embedding"


async def test_track_when_the_config_names_a_model_that_is_no_embedder_raises_a_parameter_error():
    with pytest.raises(ParameterError, match="not an embedding model"):
        await build_stage(TrackStageConfig(appearance_model="ppocr-text-direction"))


def test_track_when_an_appearance_model_is_named_but_not_loaded_says_how_to_load_it():
    with pytest.raises(ParameterError, match="load_track_stage"):
        TrackStage(appearance_model="mobilenetv2-reid")
