"""PP-OCR: DB post-processing on crafted maps, CTC decoding, and the real shipped models on text
rendered here (rapidocr_onnxruntime's files, read in place)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from streamer.engine import AutoModel
from streamer.engine.models.ocr import characters_of, ctc_greedy, line_image
from streamer.engine.models.ppocr_db import DbOptions, min_area_rect, text_quads
from streamer.errors import ModelFormatError


def render(lines: list[tuple[tuple[int, int], str]], size=(640, 480), font_size=40) -> np.ndarray:
    """Black text on white, each (x, y) placing one line."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    for origin, text in lines:
        draw.text(origin, text, fill="black", font=ImageFont.load_default(size=font_size))
    return np.asarray(image)


def ink_box(image: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(image[..., 0] < 128)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


def tilted_bar(angle_degrees: float, length=120.0, thickness=16.0, centre=(100.0, 80.0), shape=(160, 200)):
    """A probability map: 0.9 inside a rotated rectangle, 0 elsewhere."""
    ys, xs = np.mgrid[: shape[0], : shape[1]].astype(np.float64)
    angle = np.radians(angle_degrees)
    u = (xs - centre[0]) * np.cos(angle) + (ys - centre[1]) * np.sin(angle)
    v = -(xs - centre[0]) * np.sin(angle) + (ys - centre[1]) * np.cos(angle)
    return np.where((abs(u) <= length / 2) & (abs(v) <= thickness / 2), 0.9, 0.0).astype(np.float32)


def side_lengths(quad: np.ndarray) -> tuple[float, float]:
    return float(np.hypot(*(quad[1] - quad[0]))), float(np.hypot(*(quad[3] - quad[0])))


@pytest.fixture(scope="module")
def detector():
    return AutoModel.from_pretrained("ppocr-det")


@pytest.fixture(scope="module")
def recognizer():
    return AutoModel.from_pretrained("ppocr-rec")


def test_text_quads_when_a_bar_is_tilted_returns_its_rotated_rectangle_grown_by_the_unclip_distance():
    quads, scores = text_quads(tilted_bar(20.0), DbOptions(unclip_ratio=1.5))

    assert quads.shape == (1, 4, 2) and 0.8 < scores[0] <= 0.9  # the mean over the box's pixels
    length, thickness = side_lengths(quads[0])
    # area * ratio / perimeter for a ~120 x 16 bar grows each side by ~10.6 pixels
    grow = 120 * 16 * 1.5 / (2 * (120 + 16))
    assert length == pytest.approx(120 + 2 * grow, abs=3) and thickness == pytest.approx(16 + 2 * grow, abs=3)
    top_edge = quads[0, 1] - quads[0, 0]
    assert np.degrees(np.arctan2(top_edge[1], top_edge[0])) == pytest.approx(20.0, abs=1.5)


def test_text_quads_when_regions_are_apart_or_faint_keeps_each_sure_one_on_its_own():
    probability = tilted_bar(0.0, centre=(100.0, 40.0)) + tilted_bar(0.0, centre=(100.0, 120.0))
    probability[110:130, 30:60] = 0.4  # text-like (> 0.3) but below the box threshold
    probability[118:122, 40:45] = 0.0

    quads, _ = text_quads(probability, DbOptions(box_threshold=0.6))

    assert len(quads) == 2
    assert sorted(quads[:, :, 1].mean(axis=1).round()) == [40.0, 120.0]


def test_text_quads_when_pixels_touch_only_diagonally_joins_them_as_one_region():
    probability = np.zeros((60, 60), np.float32)
    for step in range(30):  # a staircase one pixel thick, 8-connected only
        probability[10 + step, 10 + step : 12 + step] = 0.9
        probability[10 + step, 14 + step : 22 + step] = 0.9

    quads, _ = text_quads(probability, DbOptions(unclip_ratio=1.0))

    assert len(quads) == 1


def test_min_area_rect_when_points_are_a_rotated_square_finds_it_not_its_bounding_box():
    corners = np.array([[50, 10], [90, 50], [50, 90], [10, 50]], np.float64)

    box, short_side = min_area_rect(corners)

    assert short_side == pytest.approx(np.hypot(40, 40))
    assert {tuple(p) for p in np.round(box).astype(int)} == {(50, 10), (90, 50), (50, 90), (10, 50)}
    assert min_area_rect(np.array([[0, 5], [3, 5], [9, 5]], np.float64))[1] == 0.0  # a line has no area


def test_ctc_greedy_when_steps_repeat_merges_them_drops_blanks_and_trims_edge_spaces():
    characters = ["", "A", "B", " "]
    steps = [3, 1, 1, 0, 1, 2, 2, 3, 0]  # " AA-ABB " -> "A", "A", "B", then a trailing space
    probabilities = np.full((len(steps), 4), 0.05, np.float32)
    probabilities[np.arange(len(steps)), steps] = 0.85

    assert ctc_greedy(probabilities, characters) == ("AAB", pytest.approx(0.85))
    assert ctc_greedy(np.eye(4, dtype=np.float32)[[0, 0]], characters) == ("", 0.0)


def test_characters_of_when_the_file_has_no_dictionary_raises_a_model_format_error():
    assert characters_of({"character": "a\nb"}, "m") == ["", "a", "b", " "]
    with pytest.raises(ModelFormatError, match="character"):
        characters_of({}, "my-rec")


def test_line_image_when_corners_are_axis_aligned_is_that_crop_and_when_tall_turns_it():
    image = np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    wide = np.array([[10, 5], [50, 5], [50, 25], [10, 25]], np.float32)
    tall = np.array([[10, 5], [20, 5], [20, 35], [10, 35]], np.float32)

    assert np.array_equal(line_image(image, wide), image[5:25, 10:50])
    assert line_image(image, tall).shape == (10, 30, 3)


def test_recognizer_dictionary_comes_from_the_model_file_with_blank_and_space(recognizer):
    outputs = recognizer.backend.run(np.zeros((1, 3, 48, 320), np.float32))[0]

    assert len(recognizer.characters) == outputs.shape[-1] == 6625
    assert recognizer.characters[0] == "" and recognizer.characters[-1] == " "


def test_detector_when_lines_are_rendered_finds_each_with_corners_around_its_ink(detector):
    image = render([((40, 60), "STREAMER"), ((200, 300), "AB12CDE")])

    lines = detector(image)

    assert len(lines) == 2 and lines.data["xyxyxyxy"].shape == (2, 4, 2)
    assert (lines.confidence > 0.6).all() and list(lines.class_id) == [0, 0]
    for box, top in zip(lines.xyxy, (0, 200)):
        ink = ink_box(image[top : top + 200]) + np.array([0, top, 0, top], np.float32)
        assert np.abs(box - ink).max() < 6  # DB's unclipped box hugs the glyphs


def test_recognizer_reads_rendered_lines_exactly(recognizer):
    lines = ["STREAMER2026", "AB12CDE", "Hello"]
    images = [render([((10, 10), text)], size=(40 + 24 * len(text), 64)) for text in lines]

    read = recognizer.read(images)
    whole = recognizer(images[1])

    assert [text for text, _ in read] == lines
    assert all(score > 0.9 for _, score in read)
    assert list(whole.text) == ["AB12CDE"] and whole.xyxy[0].tolist() == [0, 0, images[1].shape[1], 64]


def test_detector_postprocess_on_a_640x480_frame_is_quick(detector):
    import time

    image = render([((30, 60), "STREAMER 2026"), ((100, 300), "AB12CDE"), ((20, 400), "over the lazy dog")])
    captured = {}
    decode = detector.decode
    detector.decode = lambda outputs, placements, frames: captured.setdefault("args", (outputs, placements, frames))
    try:
        detector(image)
    finally:
        del detector.decode
    started = time.perf_counter()
    lines = decode(*captured["args"])[0]
    elapsed = time.perf_counter() - started

    assert len(lines) >= 3 and elapsed < 0.1
