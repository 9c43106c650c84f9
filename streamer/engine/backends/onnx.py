"""ONNX Runtime backend (CPU here; the GPU execution providers arrive with the GPU work)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import MissingDependencyError, ModelFormatError

_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


def import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise MissingDependencyError(
            "onnxruntime is not installed: `pip install onnxruntime` (CPU) or `onnxruntime-gpu` (CUDA), not both"
        ) from exc
    return onnxruntime


class OnnxRuntimeBackend:
    """One InferenceSession; `run` is safe to call from several threads at once.

    A model exported with a fixed batch size is run in chunks of that size, the last one padded.
    """

    def __init__(self, model: bytes | str, *, name: str, threads: int = 1) -> None:
        ort = import_onnxruntime()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        if threads > 1:
            # Spinning workers would steal the cores that decoding needs.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own pybind error types (InvalidProtobuf, Fail, ...)
            raise ModelFormatError(f"{name}: ONNX Runtime cannot load it as an ONNX model: {exc}") from exc
        model_input = self.session.get_inputs()[0]
        if model_input.type not in _DTYPES:
            raise ModelFormatError(f"{name}: unsupported input type {model_input.type} (want float or float16)")
        self.input_name = model_input.name
        self.input_shape = list(model_input.shape)
        self.input_dtype = np.dtype(_DTYPES[model_input.type])
        self.output_names = [output.name for output in self.session.get_outputs()]
        self.fixed_batch = model_input.shape[0] if isinstance(model_input.shape[0], int) else None
        self.providers = self.session.get_providers()
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)

    @property
    def name(self) -> str:
        return "onnxruntime-" + ("cuda" if "CUDAExecutionProvider" in self.providers else "cpu")

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        if self.fixed_batch is None or len(batch) == self.fixed_batch:
            return self.session.run(self.output_names, {self.input_name: batch})
        chunks = [self._run_padded(batch[i : i + self.fixed_batch]) for i in range(0, len(batch), self.fixed_batch)]
        return [np.concatenate(parts)[: len(batch)] for parts in zip(*chunks)]

    def _run_padded(self, chunk: np.ndarray) -> list[np.ndarray]:
        padded = np.zeros((self.fixed_batch, *chunk.shape[1:]), chunk.dtype)
        padded[: len(chunk)] = chunk
        return self.session.run(self.output_names, {self.input_name: padded})
