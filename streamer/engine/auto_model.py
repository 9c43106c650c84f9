"""AutoModel: turn a model id or a file path into a ready detector.

Loading is split in three steps, each small: resolve (id or path -> bytes and what we know of them),
open a backend on those bytes, then build the architecture's model class around the backend.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from ..batcher import InputSpec
from ..errors import ModelError, ModelNotFoundError, UnknownArchitectureError
from ..frames import ModelInfo
from .backends.onnx import OnnxRuntimeBackend
from .models import model_class
from .models.base import DetectionModel
from .models.yolo import is_ultralytics, read_metadata
from .onnx_graph import with_dynamic_shapes
from .providers.embedded import EMBEDDED, read_embedded

DEFAULT_MODEL = "centerface"
CENTERFACE_DYNAMIC = {
    "input.1": ["batch", 3, "height", "width"],
    "537": ["batch", 1, "grid_h", "grid_w"],
    "538": ["batch", 2, "grid_h", "grid_w"],
    "539": ["batch", 2, "grid_h", "grid_w"],
    "540": ["batch", 10, "grid_h", "grid_w"],
}


@dataclass(frozen=True)
class _Resolved:
    model_id: str
    data: bytes
    sha256: str
    package: str
    architecture: str | None
    class_names: tuple[str, ...] = ()
    input_size: tuple[int, int] | None = None


class AutoModel:
    """Entry point: `AutoModel.from_pretrained("centerface")` or `...("path/to/yolov8n.onnx")`."""

    @staticmethod
    def from_pretrained(
        model_id_or_path: str = DEFAULT_MODEL,
        *,
        architecture: str | None = None,
        backend: str = "onnxruntime",
        device: str = "cpu",
        batch_size: int = 4,
        confidence: float | None = None,
        iou: float | None = None,
        input_size: tuple[int, int] | None = None,
        threads: int = 1,
    ) -> DetectionModel:
        if backend != "onnxruntime" or device != "cpu":
            raise ModelError(
                f"model {model_id_or_path!r}: backend {backend!r} on {device!r} is not available yet "
                "(this build runs ONNX Runtime on the CPU)"
            )
        resolved = _resolve(model_id_or_path)
        runtime = OnnxRuntimeBackend(resolved.data, name=f"model {resolved.model_id!r}", threads=threads)
        architecture = architecture or resolved.architecture or _guess_architecture(runtime, resolved.model_id)
        class_names, native_size = _describe(resolved, runtime, architecture)
        width, height = input_size or native_size
        info = ModelInfo(
            model_id=resolved.model_id,
            architecture=architecture,
            task="detect",
            backend=runtime.name,
            package=resolved.package,
            sha256=resolved.sha256,
            class_names=class_names,
            input_size=(width, height),
        )
        spec = _input_spec(architecture, width, height, runtime)
        cls = model_class(architecture, f"model {resolved.model_id!r}")
        return cls(runtime, info, spec, confidence=confidence, iou=iou, batch_size=batch_size)


def _resolve(model_id_or_path: str) -> _Resolved:
    if model_id_or_path in EMBEDDED:
        embedded = EMBEDDED[model_id_or_path]
        data = with_dynamic_shapes(read_embedded(embedded), CENTERFACE_DYNAMIC)
        return _Resolved(
            model_id=embedded.model_id,
            data=data,
            sha256=embedded.sha256,
            package=embedded.package,
            architecture=embedded.architecture,
            class_names=embedded.class_names,
            input_size=embedded.input_size,
        )
    path = Path(model_id_or_path)
    if not path.is_file():
        known = ", ".join(sorted(EMBEDDED))
        raise ModelNotFoundError(
            f"model {model_id_or_path!r}: no such file, and not a known model id (known ids: {known})"
        )
    data = path.read_bytes()
    return _Resolved(
        model_id=str(path), data=data, sha256=hashlib.sha256(data).hexdigest(), package=path.name, architecture=None
    )


def _guess_architecture(runtime: OnnxRuntimeBackend, model_id: str) -> str:
    if is_ultralytics(runtime.metadata):
        return "yolo"
    raise UnknownArchitectureError(
        f"model {model_id!r}: cannot tell its architecture from the file's metadata; "
        "set `architecture` in [model] (for example \"yolo\" or \"centerface\")"
    )


def _describe(resolved: _Resolved, runtime: OnnxRuntimeBackend, architecture: str) -> tuple[tuple[str, ...], tuple[int, int]]:
    if architecture == "yolo":
        return read_metadata(runtime.metadata, f"model {resolved.model_id!r}")
    size = resolved.input_size or _static_input_size(runtime) or (640, 640)
    return resolved.class_names or ("face",), size


def _static_input_size(runtime: OnnxRuntimeBackend) -> tuple[int, int] | None:
    height, width = runtime.input_shape[2:4]
    return (width, height) if isinstance(width, int) and isinstance(height, int) else None


def _input_spec(architecture: str, width: int, height: int, runtime: OnnxRuntimeBackend) -> InputSpec:
    if architecture == "centerface":
        return InputSpec(width, height, runtime.input_dtype, scale=1.0, pad_value=0.0)
    return InputSpec(width, height, runtime.input_dtype)
