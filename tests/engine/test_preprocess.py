"""Preprocessing: letterbox geometry (place / Placement) and InputBuffers (letterboxing into reused arrays)."""

from __future__ import annotations

import itertools
from pathlib import Path

import av
import numpy as np
import pytest

from streamer.engine.preprocess import InputBuffers, InputSpec, Placement, place
from streamer.frames import Frame

F32 = np.dtype(np.float32)
PAD = np.float32(114 / 255)
ONE_LEVEL = 1 / 255


def solid(width: int, height: int, rgb: tuple[int, int, int], index: int = 0) -> Frame:
    image = np.empty((height, width, 3), np.uint8)
    image[...] = rgb
    return Frame("s", index, None, 0.0, image=image)


# --- place / Placement ------------------------------------------------------------------------------


def test_place_letterboxes_landscape_into_a_square() -> None:
    placement, new_w, new_h = place(1280, 720, InputSpec(320, 320, F32))

    assert (new_w, new_h) == (320, 180)
    assert placement == Placement(gain=0.25, left=0, top=70)  # (320 - 180) // 2


def test_place_letterboxes_landscape_into_a_shorter_input() -> None:
    placement, new_w, new_h = place(1280, 720, InputSpec(320, 256, F32))

    assert (new_w, new_h) == (320, 180)
    assert placement == Placement(gain=0.25, left=0, top=38)


def test_place_pillarboxes_portrait() -> None:
    placement, new_w, new_h = place(480, 640, InputSpec(320, 320, F32))

    assert (new_w, new_h) == (240, 320)
    assert placement == Placement(gain=0.5, left=40, top=0)


def test_place_scales_small_frames_up() -> None:
    placement, new_w, new_h = place(160, 96, InputSpec(320, 320, F32))

    assert (placement.gain, new_w, new_h, placement.top) == (2.0, 320, 192, 64)


def test_placement_to_source_inverts_the_letterbox() -> None:
    placement, _, _ = place(1280, 720, InputSpec(320, 320, F32))
    source = np.array([[0, 0, 1280, 720], [100, 200, 300, 400]], np.float32)
    in_input = source * placement.gain
    in_input[:, 0::2] += placement.left
    in_input[:, 1::2] += placement.top

    np.testing.assert_allclose(placement.to_source(in_input), source, atol=1e-3)


def test_placement_to_source_leaves_its_input_unchanged() -> None:
    placement = Placement(gain=0.5, left=40, top=10)
    points = np.array([[40.0, 10.0, 60.0, 30.0]])

    mapped = placement.to_source(points)

    np.testing.assert_array_equal(mapped, [[0.0, 0.0, 40.0, 40.0]])
    np.testing.assert_array_equal(points, [[40.0, 10.0, 60.0, 30.0]])


# --- InputBuffers -----------------------------------------------------------------------------------


def test_fill_scales_pixels_inside_the_content_region() -> None:
    buffer = InputBuffers(InputSpec(320, 320, F32), capacity=2).acquire()

    batch, [placement] = buffer.fill([solid(1280, 720, (10, 128, 250))])

    assert batch.shape == (1, 3, 320, 320) and batch.dtype == F32
    content = batch[0, :, placement.top : placement.top + 180, :]
    expected = np.array([10, 128, 250], np.float32)[:, None, None] / 255
    np.testing.assert_allclose(content, np.broadcast_to(expected, content.shape), atol=1.5 * ONE_LEVEL)


def test_fill_pads_outside_the_content_region() -> None:
    buffer = InputBuffers(InputSpec(320, 320, F32), capacity=1).acquire()

    batch, [placement] = buffer.fill([solid(1280, 720, (10, 128, 250))])

    assert placement.top == 70
    assert (batch[0, :, :70, :] == PAD).all()
    assert (batch[0, :, 250:, :] == PAD).all()


def test_fill_uses_the_specs_scale_and_pad_value() -> None:
    spec = InputSpec(64, 64, F32, scale=1.0, pad_value=0.0)
    buffer = InputBuffers(spec, capacity=1).acquire()

    batch, [placement] = buffer.fill([solid(128, 64, (200, 100, 50))])  # -> 64 x 32, top 16

    assert placement == Placement(gain=0.5, left=0, top=16)
    np.testing.assert_allclose(batch[0, :, 16:48, :].max(axis=(1, 2)), [200, 100, 50], atol=1.5)
    assert (batch[0, :, :16, :] == 0).all() and (batch[0, :, 48:, :] == 0).all()


def test_fill_when_frame_already_has_the_input_size_copies_it_exactly() -> None:
    image = np.random.default_rng(0).integers(0, 256, (32, 48, 3), np.uint8)
    buffer = InputBuffers(InputSpec(48, 32, F32), capacity=1).acquire()

    batch, [placement] = buffer.fill([Frame("s", 0, None, 0.0, image=image)])

    assert placement == Placement(gain=1.0, left=0, top=0)
    np.testing.assert_allclose(batch[0], image.transpose(2, 0, 1) / 255, atol=1e-6)


def test_fill_gives_each_frame_size_its_own_geometry() -> None:
    buffer = InputBuffers(InputSpec(320, 320, F32), capacity=3).acquire()

    batch, placements = buffer.fill([solid(1280, 720, (255, 0, 0)), solid(480, 640, (0, 255, 0))])

    assert placements == [Placement(0.25, 0, 70), Placement(0.5, 40, 0)]
    assert (batch[0, 0, 70:250, :] > 0.99).all() and (batch[0, :, :70, :] == PAD).all()
    assert (batch[1, 1, :, 40:280] > 0.99).all() and (batch[1, :, :, :40] == PAD).all()
    assert (batch[1, :, :, 280:] == PAD).all()


def test_fill_when_a_slot_changes_geometry_repads_the_old_content() -> None:
    buffer = InputBuffers(InputSpec(320, 320, F32), capacity=1).acquire()
    buffer.fill([solid(1280, 720, (255, 255, 255))])  # content rows 70..250, full width

    batch, _ = buffer.fill([solid(480, 640, (255, 255, 255))])  # content columns 40..280, full height

    assert (batch[0, :, :, :40] == PAD).all() and (batch[0, :, :, 280:] == PAD).all()


def test_fill_returns_only_the_slots_it_filled() -> None:
    buffer = InputBuffers(InputSpec(32, 32, F32), capacity=4).acquire()

    batch, placements = buffer.fill([solid(32, 32, (1, 2, 3)), solid(32, 32, (4, 5, 6))])

    assert batch.shape == (2, 3, 32, 32) and len(placements) == 2


def test_input_buffers_reuse_the_same_array_in_steady_state() -> None:
    buffers = InputBuffers(InputSpec(64, 64, F32), capacity=2)
    first = buffers.acquire()
    array = first.array
    buffers.release(first)

    for i in range(5):
        buffer = buffers.acquire()
        batch, _ = buffer.fill([solid(128, 96, (i, i, i)), solid(128, 96, (i, i, i))])
        assert buffer is first and buffer.array is array
        assert np.shares_memory(batch, array)
        buffers.release(buffer)


def test_input_buffers_hand_out_distinct_arrays_while_both_are_held() -> None:
    buffers = InputBuffers(InputSpec(16, 16, F32), capacity=1)

    one, two = buffers.acquire(), buffers.acquire()

    assert one.array is not two.array
    assert not np.shares_memory(one.array, two.array)


def test_new_buffer_starts_padded() -> None:
    buffer = InputBuffers(InputSpec(16, 16, F32), capacity=2).acquire()

    assert buffer.array.shape == (2, 3, 16, 16) and (buffer.array == PAD).all()


# --- InputBuffers with decoded PyAV frames ----------------------------------------------------------


@pytest.fixture(scope="module")
def decoded_frames(clip: Path) -> list[Frame]:
    """The clip's first three frames as the decoder hands them over (YUV, converted on demand)."""
    with av.open(str(clip)) as container:
        decoded = list(itertools.islice(container.decode(video=0), 3))
    return [Frame("clip", index, None, 0.0, decoded=frame) for index, frame in enumerate(decoded)]


def test_fill_accepts_decoded_pyav_frames(decoded_frames: list[Frame]) -> None:
    buffer = InputBuffers(InputSpec(80, 80, F32), capacity=3).acquire()

    batch, placements = buffer.fill(decoded_frames)

    assert decoded_frames[0].decoded is not None
    assert placements == [Placement(0.5, 0, 16)] * 3  # 160 x 96 -> 80 x 48
    assert (batch[:, :, :16, :] == PAD).all() and (batch[:, :, 64:, :] == PAD).all()
    assert (batch[:, :, 16:64, :] != PAD).any()


def test_fill_from_decoded_frames_agrees_with_fill_from_arrays(decoded_frames: list[Frame]) -> None:
    spec = InputSpec(80, 80, F32)
    as_arrays = [Frame("clip", f.index, f.pts, f.wall_time, image=f.image) for f in decoded_frames]

    from_decoded, placements_decoded = InputBuffers(spec, 3).acquire().fill(decoded_frames)
    from_arrays, placements_arrays = InputBuffers(spec, 3).acquire().fill(as_arrays)

    assert placements_decoded == placements_arrays
    difference = np.abs(from_decoded - from_arrays)
    # The two paths scale in different colour spaces (YUV then RGB, or RGB), so sharp edges differ a
    # little; the picture as a whole must match.
    assert difference.mean() < 2 * ONE_LEVEL
    assert np.percentile(difference, 99) < 8 * ONE_LEVEL
