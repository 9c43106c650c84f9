"""ONNX Runtime backend: the CPU provider, or the CUDA and TensorRT execution providers.

onnxruntime-gpu silently falls back to the CPU when CUDA, cuDNN or TensorRT libraries are missing,
so the providers a session actually got are checked against those asked for.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...device.arrays import device_of, is_host_array
from ...device.streams import current_stream, host_wait, record
from ...errors import MissingDependencyError, ModelFormatError, ParameterError
from ...importing import import_optional
from . import parse_device, run_in_fixed_batches

_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}
CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
GPU_PROVIDERS = (CUDA, TENSORRT)
_SHORT_NAMES = {TENSORRT: "tensorrt", CUDA: "cuda"}

ProviderSpec = str | tuple[str, dict[str, Any]]


def import_onnxruntime() -> Any:
    return import_optional(
        "onnxruntime",
        extra="onnxruntime",
        what="the ONNX Runtime backend",
        install="pip install onnxruntime (CPU) or onnxruntime-gpu (CUDA), not both",
    )


def choose_providers(device: str, providers: list[str] | None = None, name: str = "device") -> list[ProviderSpec]:
    """The providers to ask for: an explicit list wins; else CUDA then CPU on cuda[:N], CPU on cpu."""
    kind, index = parse_device(device, name)
    names = list(providers) if providers else ([CUDA, CPU] if kind == "cuda" else [CPU])
    return [(name, {"device_id": index}) if name in GPU_PROVIDERS and kind == "cuda" else name for name in names]


def provider_names(providers: list[ProviderSpec]) -> list[str]:
    return [spec if isinstance(spec, str) else spec[0] for spec in providers]


def missing_gpu_providers(requested: list[str], obtained: list[str]) -> list[str]:
    """GPU providers that were asked for but that the session did not get."""
    return [name for name in requested if name in GPU_PROVIDERS and name not in obtained]


def backend_name(obtained: list[str]) -> str:
    """The backend's name after the best provider obtained: onnxruntime-tensorrt, -cuda or -cpu."""
    best = next((short for provider, short in _SHORT_NAMES.items() if provider in obtained), "cpu")
    return f"onnxruntime-{best}"


class OnnxRuntimeBackend:
    """One InferenceSession; `run` is safe to call from several threads at once.

    A model exported with a fixed batch size is run in chunks of that size, the last one padded.
    A batch already on the GPU (a CuPy array) is bound to the session in place (I/O binding), so
    ONNX Runtime reads it where it is; the outputs come back to the host.

    Streams (streamer/device/streams.py): the CUDA provider runs on streams of its own that Python
    cannot name, so the reader's side of the rule is kept on the host: an event is recorded on the
    caller's current stream, where the batch (and a padded last chunk, made there) is ready, and the
    host waits for it before the session may read; `synchronize_inputs` then tells the provider
    (documented for memory "operated on a different stream", a no-op for some providers).
    `run_with_iobinding` returns once the provider's streams are done (ONNX Runtime synchronizes
    them at the end of a run) and the outputs are copied to the host, so nothing is left to hand back.
    """

    def __init__(
        self,
        model: bytes | str,
        *,
        name: str,
        threads: int = 1,
        device: str = "cpu",
        providers: list[str] | None = None,
    ) -> None:
        ort = import_onnxruntime()
        requested = choose_providers(device, providers, name)
        self._device_index = parse_device(device, name)[1]
        _check_known_providers(ort, provider_names(requested), name)
        self.session = _open_session(ort, model, _session_options(ort, threads), requested, name)
        self.providers: list[str] = self.session.get_providers()
        _check_gpu_providers_obtained(ort, provider_names(requested), self.providers, name)
        model_input = self.session.get_inputs()[0]
        if model_input.type not in _DTYPES:
            raise ModelFormatError(f"{name}: unsupported input type {model_input.type} (want float or float16)")
        self.input_name = model_input.name
        self.input_shape = list(model_input.shape)
        self.input_dtype = np.dtype(_DTYPES[model_input.type])
        self.output_names = [output.name for output in self.session.get_outputs()]
        self.fixed_batch = model_input.shape[0] if isinstance(model_input.shape[0], int) else None
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)

    @property
    def name(self) -> str:
        return backend_name(self.providers)

    @property
    def input_device(self) -> str:
        """"cuda:N" when a GPU provider runs the session (inputs are best prepared there), else "cpu"."""
        on_gpu = any(provider in GPU_PROVIDERS for provider in self.providers)
        return f"cuda:{self._device_index}" if on_gpu else "cpu"

    def run(self, batch: Any) -> list[np.ndarray]:
        return run_in_fixed_batches(self._run_once, batch, self.fixed_batch)

    def _run_once(self, batch: Any) -> list[np.ndarray]:
        if is_host_array(batch):
            return self.session.run(self.output_names, {self.input_name: batch})
        return self.run_bound(batch)

    def run_bound(self, batch: Any) -> list[np.ndarray]:
        """Run on a batch bound in place, wherever it lives: a CuPy array on its GPU, or a NumPy one."""
        binding = self.session.io_binding()
        device_type, device_id, pointer = _memory_of(batch)
        with device_of(batch):
            host_wait(record(current_stream(batch)))  # what the caller's stream wrote has landed
            binding.bind_input(self.input_name, device_type, device_id, batch.dtype, list(batch.shape), pointer)
            for output in self.output_names:
                binding.bind_output(output, device_type, device_id)
            binding.synchronize_inputs()
            self.session.run_with_iobinding(binding)
            binding.synchronize_outputs()
            return binding.copy_outputs_to_cpu()


def _memory_of(batch: Any) -> tuple[str, int, int]:
    """(device type, device id, address) of a C-contiguous NumPy or CuPy array, for I/O binding."""
    if not batch.flags.c_contiguous:
        raise ParameterError("a batch bound in place must be C-contiguous")
    if is_host_array(batch):
        return "cpu", 0, batch.ctypes.data
    return "cuda", batch.device.id, batch.data.ptr


def _session_options(ort: Any, threads: int) -> Any:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if threads > 1:
        # Spinning workers would steal the cores that decoding needs.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def _open_session(ort: Any, model: bytes | str, options: Any, providers: list[ProviderSpec], name: str) -> Any:
    try:
        return ort.InferenceSession(model, options, providers=providers)
    except Exception as exc:  # ORT raises its own pybind error types (InvalidProtobuf, Fail, ...)
        raise ModelFormatError(f"{name}: ONNX Runtime cannot load it as an ONNX model: {exc}") from exc


def _check_known_providers(ort: Any, requested: list[str], name: str) -> None:
    unknown = [provider for provider in requested if provider not in ort.get_all_providers()]
    if unknown:
        raise ParameterError(f"{name}: unknown ONNX Runtime execution providers {unknown}")


def _check_gpu_providers_obtained(ort: Any, requested: list[str], obtained: list[str], name: str) -> None:
    missing = missing_gpu_providers(requested, obtained)
    if not missing:
        return
    if any(provider not in ort.get_available_providers() for provider in missing):
        cause = (
            "this onnxruntime build has no GPU providers: uninstall onnxruntime and install onnxruntime-gpu "
            "(never both)"
        )
    else:
        cause = "onnxruntime-gpu is installed but could not load the CUDA, cuDNN or TensorRT libraries they need"
    raise MissingDependencyError(
        f"{name}: asked for execution providers {requested} but the session fell back to {obtained}; {cause}"
    )
