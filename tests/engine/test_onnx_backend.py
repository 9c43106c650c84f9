"""ONNX Runtime backend: providers asked for versus obtained, static batches, input types."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import pytest

from streamer.engine.backends.onnx import (
    CPU,
    CUDA,
    TENSORRT,
    OnnxRuntimeBackend,
    backend_name,
    choose_providers,
    missing_gpu_providers,
)
from streamer.errors import MissingDependencyError, ModelFormatError, ParameterError
from tests.engine.gpu import requires_gpu


def _add_one_model(batch: int | str = "batch", elem_type: int = onnx.TensorProto.FLOAT) -> bytes:
    """y = x + 1 on (batch, 3) tensors: a fixed int batch, or a named (dynamic) one."""
    one = onnx.helper.make_tensor("one", elem_type, [1], [1.0])
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Add", ["x", "one"], ["y"])],
        "add_one",
        [onnx.helper.make_tensor_value_info("x", elem_type, [batch, 3])],
        [onnx.helper.make_tensor_value_info("y", elem_type, [batch, 3])],
        initializer=[one],
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    onnx.helper.set_model_props(model, {"author": "tests"})
    return model.SerializeToString()


def test_cpu_device_gets_the_cpu_provider_and_says_so():
    backend = OnnxRuntimeBackend(_add_one_model(), name="add-one")

    assert backend.providers == [CPU]
    assert backend.name == "onnxruntime-cpu"
    assert backend.fixed_batch is None
    assert backend.input_shape == ["batch", 3]
    assert backend.metadata == {"author": "tests"}


def test_static_batch_runs_in_padded_chunks_and_keeps_every_item():
    backend = OnnxRuntimeBackend(_add_one_model(batch=2), name="static")
    batch = np.arange(9, dtype=np.float32).reshape(3, 3)

    (outputs,) = backend.run(batch)

    assert backend.fixed_batch == 2
    assert outputs.shape == (3, 3)
    np.testing.assert_array_equal(outputs, batch + 1)


def test_static_batch_of_exactly_its_size_runs_once():
    backend = OnnxRuntimeBackend(_add_one_model(batch=2), name="static")
    batch = np.ones((2, 3), np.float32)

    (outputs,) = backend.run(batch)

    np.testing.assert_array_equal(outputs, batch + 1)


def test_float16_input_is_detected():
    backend = OnnxRuntimeBackend(_add_one_model(elem_type=onnx.TensorProto.FLOAT16), name="half")

    (outputs,) = backend.run(np.zeros((1, 3), np.float16))

    assert backend.input_dtype == np.float16
    assert outputs.dtype == np.float16


def test_unsupported_input_type_is_a_format_error():
    with pytest.raises(ModelFormatError, match="unsupported input type"):
        OnnxRuntimeBackend(_add_one_model(elem_type=onnx.TensorProto.DOUBLE), name="double")


def test_not_an_onnx_model_is_a_format_error():
    with pytest.raises(ModelFormatError, match="garbage: ONNX Runtime cannot load it"):
        OnnxRuntimeBackend(b"not onnx", name="garbage")


@pytest.mark.skipif(CUDA in onnxruntime.get_available_providers(), reason="this onnxruntime has CUDA")
@pytest.mark.filterwarnings("ignore:Specified provider")
def test_cuda_without_a_gpu_build_says_it_fell_back_and_names_the_providers():
    with pytest.raises(MissingDependencyError) as caught:
        OnnxRuntimeBackend(_add_one_model(), name="add-one", device="cuda")

    message = str(caught.value)
    assert "fell back" in message and "onnxruntime-gpu" in message
    assert f"['{CUDA}', '{CPU}']" in message and f"fell back to ['{CPU}']" in message


@pytest.mark.skipif(TENSORRT in onnxruntime.get_available_providers(), reason="this onnxruntime has TensorRT")
@pytest.mark.filterwarnings("ignore:Specified provider")
def test_explicit_tensorrt_provider_that_is_not_obtained_is_refused():
    with pytest.raises(MissingDependencyError, match=TENSORRT):
        OnnxRuntimeBackend(_add_one_model(), name="add-one", device="cuda", providers=[TENSORRT, CPU])


def test_unknown_provider_is_a_parameter_error():
    with pytest.raises(ParameterError, match="NoSuchExecutionProvider"):
        OnnxRuntimeBackend(_add_one_model(), name="add-one", providers=["NoSuchExecutionProvider"])


def test_bad_device_string_is_a_parameter_error_naming_the_model():
    with pytest.raises(ParameterError, match="add-one: device 'gpu'"):
        OnnxRuntimeBackend(_add_one_model(), name="add-one", device="gpu")


@pytest.mark.parametrize(
    ("device", "providers", "expected"),
    [
        ("cpu", None, [CPU]),
        ("cuda", None, [(CUDA, {"device_id": 0}), CPU]),
        ("cuda:1", None, [(CUDA, {"device_id": 1}), CPU]),
        ("cuda:1", [TENSORRT, CUDA, CPU], [(TENSORRT, {"device_id": 1}), (CUDA, {"device_id": 1}), CPU]),
        ("cpu", [CPU], [CPU]),
    ],
)
def test_choose_providers_explicit_list_wins_and_gpu_ones_get_the_device(device, providers, expected):
    assert choose_providers(device, providers) == expected


def test_missing_gpu_providers_ignores_the_cpu():
    assert missing_gpu_providers([TENSORRT, CUDA, CPU], [CUDA, CPU]) == [TENSORRT]
    assert missing_gpu_providers([CPU], [CPU]) == []


@pytest.mark.parametrize(
    ("obtained", "expected"),
    [([CPU], "onnxruntime-cpu"), ([CUDA, CPU], "onnxruntime-cuda"), ([TENSORRT, CUDA, CPU], "onnxruntime-tensorrt")],
)
def test_backend_name_follows_the_best_provider_obtained(obtained, expected):
    assert backend_name(obtained) == expected


@requires_gpu()
@pytest.mark.skipif(CUDA not in onnxruntime.get_available_providers(), reason="needs onnxruntime-gpu")
def test_cuda_provider_is_obtained_on_a_gpu():
    backend = OnnxRuntimeBackend(_add_one_model(batch=2), name="add-one", device="cuda")

    (outputs,) = backend.run(np.zeros((3, 3), np.float32))

    assert backend.name == "onnxruntime-cuda"
    np.testing.assert_array_equal(outputs, np.ones((3, 3), np.float32))


def test_run_bound_when_given_a_host_batch_binds_it_in_place_and_matches_run():
    backend = OnnxRuntimeBackend(_add_one_model(), name="add-one")
    batch = np.arange(12, dtype=np.float32).reshape(4, 3)

    (bound,) = backend.run_bound(batch)

    np.testing.assert_array_equal(bound, batch + 1)
    assert backend.input_device == "cpu"


def test_run_bound_when_the_batch_is_not_contiguous_says_so():
    backend = OnnxRuntimeBackend(_add_one_model(), name="add-one")

    with pytest.raises(ParameterError, match="C-contiguous"):
        backend.run_bound(np.zeros((3, 6), np.float32)[:, ::2])


@requires_gpu()
@pytest.mark.skipif(CUDA not in onnxruntime.get_available_providers(), reason="needs onnxruntime-gpu")
def test_cuda_provider_when_given_a_device_batch_reads_it_in_place():
    import cupy

    backend = OnnxRuntimeBackend(_add_one_model(batch=2), name="add-one", device="cuda")

    (outputs,) = backend.run(cupy.arange(9, dtype=cupy.float32).reshape(3, 3))

    assert backend.input_device == "cuda:0"
    np.testing.assert_array_equal(outputs, np.arange(9, dtype=np.float32).reshape(3, 3) + 1)


@requires_gpu()
@pytest.mark.skipif(CUDA not in onnxruntime.get_available_providers(), reason="needs onnxruntime-gpu")
def test_cuda_provider_when_a_padded_batch_is_written_on_a_non_blocking_stream_reads_it_whole():
    """ONNX Runtime's streams are its own: the host waits for the caller's stream (device/streams.py)."""
    import cupy

    backend = OnnxRuntimeBackend(_add_one_model(batch=2), name="add-one", device="cuda")
    with cupy.cuda.Stream(non_blocking=True):
        for _ in range(20):
            batch = cupy.zeros((3, 3), cupy.float32)
            batch += cupy.arange(3, dtype=cupy.float32)[:, None]  # queued on the stream, maybe not done

            (outputs,) = backend.run(batch)  # a fixed batch of 2: the last chunk is padded

            np.testing.assert_array_equal(outputs, cupy.asnumpy(batch) + 1)
