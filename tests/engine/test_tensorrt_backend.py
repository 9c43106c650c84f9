"""TensorRT backend: plan cache keys, profiles and dtypes here; building and running on a GPU."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest

from streamer.engine.cache import atomic_write
from streamer.engine.backends import tensorrt as tensorrt_module
from streamer.engine.backends.tensorrt import (
    TENSORRT_API,
    TENSORRT_OPTIONAL,
    PlanSettings,
    TensorRTBackend,
    build_plan_for_device,
    build_recipe,
    fp16_onnx,
    format_compute_capability,
    import_cupy,
    import_tensorrt,
    load_or_build_plan,
    optimization_profile,
    output_shapes_for_batch,
    plan_batch_range,
    plan_cache_key,
    plan_cache_path,
    trt_dtype_to_numpy,
)
from streamer.engine.entities import BatchProfile, LoadOptions, ModelPackage
from streamer.errors import MissingDependencyError, ModelFormatError, ModelNotFoundError, ParameterError
from tests.engine.gpu import requires_gpu

KEY_INPUTS = {
    "onnx_sha256": "ab" * 32,
    "compute_capability": "8.6",
    "tensorrt_version": "10.3.0",
    "fp16": False,
    "batch_min": 1,
    "batch_opt": 4,
    "batch_max": 4,
}
CHANGED = {
    "onnx_sha256": "cd" * 32,
    "compute_capability": "9.0",
    "tensorrt_version": "10.4.0",
    "fp16": True,
    "batch_min": 2,
    "batch_opt": 3,
    "batch_max": 8,
}


def _add_one_onnx(path: Path, batch: int | str = "batch") -> Path:
    """y = x + 1 on (batch, 3, 4, 4) float tensors."""
    one = onnx.helper.make_tensor("one", onnx.TensorProto.FLOAT, [1], [1.0])
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Add", ["x", "one"], ["y"])],
        "add_one",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [batch, 3, 4, 4])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [batch, 3, 4, 4])],
        initializer=[one],
    )
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]), str(path))
    return path


def test_cache_key_is_stable_and_file_name_safe():
    key = plan_cache_key(**KEY_INPUTS)

    assert key == plan_cache_key(**KEY_INPUTS)
    assert key.startswith("sm8.6-trt10.3.0-fp32-b1-4-4-")
    assert plan_cache_path("/cache", key) == Path("/cache") / f"{key}.plan"


@pytest.mark.parametrize("field", list(KEY_INPUTS))
def test_cache_key_changes_with_every_input(field):
    changed = {**KEY_INPUTS, field: CHANGED[field]}
    if field == "batch_max":
        changed["batch_opt"] = KEY_INPUTS["batch_opt"]  # keep min <= opt <= max

    assert plan_cache_key(**changed) != plan_cache_key(**KEY_INPUTS)


def test_cache_key_of_an_odd_version_string_stays_a_safe_file_name():
    key = plan_cache_key(**{**KEY_INPUTS, "tensorrt_version": "10.3/../../x y"})

    assert "/" not in key and " " not in key
    assert plan_cache_path("/cache", key).parent == Path("/cache")


def test_cache_key_refuses_an_impossible_batch_range():
    with pytest.raises(ParameterError, match="min <= opt <= max"):
        plan_cache_key(**{**KEY_INPUTS, "batch_min": 5})


def test_cache_path_refuses_a_key_that_escapes_the_cache():
    with pytest.raises(ParameterError, match="not a safe file name"):
        plan_cache_path("/cache", "../outside")


def test_profile_replaces_the_dynamic_batch_and_keeps_static_dims():
    low, opt, high = optimization_profile((-1, 3, 640, 640), batch_min=1, batch_max=8)

    assert low == (1, 3, 640, 640)
    assert opt == high == (8, 3, 640, 640)


def test_profile_accepts_named_dims_and_an_explicit_opt():
    assert optimization_profile(["batch", 3, 32, 32], 2, 8, batch_opt=4)[1] == (4, 3, 32, 32)


def test_profile_of_a_static_input_is_that_shape():
    assert optimization_profile((2, 3, 8, 8), 1, 8) == ((2, 3, 8, 8),) * 3


def test_profile_refuses_dynamic_spatial_dims():
    with pytest.raises(ModelFormatError, match="only the batch dimension may be dynamic"):
        optimization_profile((-1, 3, -1, -1), 1, 4)


@pytest.mark.parametrize(
    ("name", "dtype"),
    [
        ("FLOAT", np.float32),
        ("HALF", np.float16),
        ("INT8", np.int8),
        ("INT32", np.int32),
        ("INT64", np.int64),
        ("BOOL", np.bool_),
        ("UINT8", np.uint8),
    ],
)
def test_dtype_table_maps_tensorrt_names_to_numpy(name, dtype):
    assert trt_dtype_to_numpy(name) == np.dtype(dtype)


def test_dtype_without_a_numpy_equivalent_is_a_format_error():
    with pytest.raises(ModelFormatError, match="BF16"):
        trt_dtype_to_numpy("BF16")


def test_output_shapes_fill_the_batch_and_keep_the_rest():
    shapes = output_shapes_for_batch({"boxes": (-1, 84, 8400), "count": (3,)}, batch=3)

    assert shapes == {"boxes": (3, 84, 8400), "count": (3,)}


def test_output_shapes_refuse_data_dependent_dims():
    with pytest.raises(ModelFormatError, match="data-dependent"):
        output_shapes_for_batch({"masks": (2, -1, 4)}, batch=2)


def test_compute_capability_from_cupy_form():
    assert format_compute_capability("86") == "8.6"
    assert format_compute_capability("120") == "12.0"
    with pytest.raises(ParameterError):
        format_compute_capability("x")


def test_plan_batch_range_runs_from_the_package_min_to_the_request():
    assert plan_batch_range(BatchProfile(), (2, 8)) == (1, 8)
    assert plan_batch_range(BatchProfile(min=1, max=4), (1, 8)) == (1, 4)


def test_load_or_build_plan_builds_once_then_reads_the_cache(tmp_path):
    onnx_path = _add_one_onnx(tmp_path / "model.onnx")
    builds: list[PlanSettings] = []

    def fake_build(model: bytes, settings: PlanSettings) -> bytes:
        builds.append(settings)
        return b"plan for " + str(len(model)).encode()

    settings = PlanSettings(fp16=True, batch_min=1, batch_max=4)
    first = load_or_build_plan(onnx_path, tmp_path / "cache", "8.6", "10.3.0", settings, build=fake_build)
    second = load_or_build_plan(onnx_path, tmp_path / "cache", "8.6", "10.3.0", settings, build=fake_build)

    assert first == second and first.startswith(b"plan for ")
    assert builds == [settings]
    assert [path.suffix for path in (tmp_path / "cache").iterdir()] == [".plan"]


def test_load_or_build_plan_builds_again_for_another_gpu(tmp_path):
    onnx_path = _add_one_onnx(tmp_path / "model.onnx")
    builds: list[str] = []

    def fake_build(model: bytes, settings: PlanSettings) -> bytes:
        builds.append("built")
        return b"plan"

    for capability in ("8.6", "9.0"):
        load_or_build_plan(onnx_path, tmp_path / "cache", capability, "10.3.0", build=fake_build)

    assert len(builds) == 2
    assert len(list((tmp_path / "cache").glob("*.plan"))) == 2


def test_a_failed_build_leaves_nothing_in_the_cache(tmp_path):
    onnx_path = _add_one_onnx(tmp_path / "model.onnx")

    def failing_build(model: bytes, settings: PlanSettings) -> bytes:
        raise ModelFormatError("cannot parse")

    with pytest.raises(ModelFormatError):
        load_or_build_plan(onnx_path, tmp_path / "cache", "8.6", "10.3.0", build=failing_build)
    assert list((tmp_path / "cache").glob("*")) == []


def test_load_or_build_plan_without_the_onnx_file_is_model_not_found(tmp_path):
    with pytest.raises(ModelNotFoundError):
        load_or_build_plan(tmp_path / "nope.onnx", tmp_path, "8.6", "10.3.0", build=lambda m, s: b"")


def test_write_atomically_replaces_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "deep" / "x.plan"

    atomic_write(path, b"one")
    atomic_write(path, b"two")

    assert path.read_bytes() == b"two"
    assert [p.name for p in path.parent.iterdir()] == ["x.plan"]


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="tensorrt is installed here")
def test_import_tensorrt_names_the_extra():
    with pytest.raises(MissingDependencyError, match=r"pip install 'streamer\[tensorrt\]'"):
        import_tensorrt()


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="cupy is installed here")
def test_import_cupy_names_the_extra():
    with pytest.raises(MissingDependencyError, match=r"pip install 'streamer\[gpu\]'"):
        import_cupy()


def test_tensorrt_on_the_cpu_is_a_parameter_error():
    with pytest.raises(ParameterError, match="only on a CUDA device"):
        TensorRTBackend(b"", name="tiny", device="cpu")


# --- on a GPU, with TensorRT and CuPy ----------------------------------------------------------


@requires_gpu("tensorrt", "cupy")
def test_plan_built_from_onnx_runs_and_is_cached(tmp_path):
    onnx_path = _add_one_onnx(tmp_path / "model.onnx")
    cache = tmp_path / "plans"
    plan = build_plan_for_device(onnx_path, "cuda", cache, PlanSettings(batch_min=1, batch_max=4))
    backend = TensorRTBackend(plan, name="tiny", device="cuda")
    images = np.random.default_rng(0).random((6, 3, 4, 4), dtype=np.float32)  # more than max: two runs

    (outputs,) = backend.run(images)

    assert backend.input_shape == ["batch", 3, 4, 4] and backend.max_batch == 4
    np.testing.assert_allclose(outputs, images + 1, rtol=1e-6)
    assert len(list(cache.glob("*.plan"))) == 1
    assert build_plan_for_device(onnx_path, "cuda", cache, PlanSettings(batch_min=1, batch_max=4)) == plan


@requires_gpu("tensorrt", "cupy")
def test_fp16_plan_when_built_on_the_installed_tensorrt_runs_within_half_precision(tmp_path):
    """TensorRT 10 sets BuilderFlag.FP16; 11 builds the float16-converted ONNX strongly typed."""
    onnx_path = tmp_path / "conv.onnx"
    onnx_path.write_bytes(_conv_model())
    plan = build_plan_for_device(onnx_path, "cuda", tmp_path / "plans", PlanSettings(True, 1, 4))
    backend = TensorRTBackend(plan, name="conv", device="cuda")
    batch = np.random.default_rng(0).random((2, 3, 8, 8), dtype=np.float32)
    import onnxruntime

    expected = onnxruntime.InferenceSession(onnx_path.read_bytes(), providers=["CPUExecutionProvider"]).run(
        None, {"x": batch}
    )[0]
    (outputs,) = backend.run(batch.astype(backend.input_dtype))

    np.testing.assert_allclose(np.asarray(outputs, np.float32), expected, rtol=1e-2, atol=1e-2)


@requires_gpu("tensorrt", "cupy")
def test_device_batch_when_written_on_a_non_blocking_stream_is_read_whole_by_the_engine(tmp_path):
    import cupy

    onnx_path = _add_one_onnx(tmp_path / "model.onnx", batch=2)  # static: the last chunk is padded
    backend = TensorRTBackend(build_plan_for_device(onnx_path, "cuda", tmp_path / "plans", PlanSettings()),
                              name="tiny", device="cuda")
    with cupy.cuda.Stream(non_blocking=True):
        for _ in range(20):
            images = cupy.full((3, 3, 4, 4), 0.0, cupy.float32)
            images += cupy.arange(3, dtype=cupy.float32)[:, None, None, None]  # queued, not done
            (outputs,) = backend.run(images)
            np.testing.assert_array_equal(cupy.asnumpy(outputs), cupy.asnumpy(images) + 1)


@requires_gpu("tensorrt", "cupy")
def test_static_batch_plan_pads_the_last_chunk(tmp_path):
    onnx_path = _add_one_onnx(tmp_path / "model.onnx", batch=2)
    plan = build_plan_for_device(onnx_path, "cuda", tmp_path / "plans", PlanSettings())
    backend = TensorRTBackend(plan, name="tiny", device="cuda")
    images = np.ones((3, 3, 4, 4), np.float32)

    (outputs,) = backend.run(images)

    assert backend.fixed_batch == 2
    np.testing.assert_array_equal(outputs, images + 1)


@requires_gpu("tensorrt", "cupy")
def test_from_package_file_builds_an_onnx_package(tmp_path):
    onnx_path = _add_one_onnx(tmp_path / "model.onnx")
    package = ModelPackage(package_id="trt-onnx", backend="tensorrt", format="onnx")
    options = LoadOptions(device="cuda", batch_size=2, cache_dir=str(tmp_path / "cache"))

    backend = TensorRTBackend.from_package_file(onnx_path, package=package, name="tiny", options=options)
    (outputs,) = backend.run(np.zeros((2, 3, 4, 4), np.float32))

    np.testing.assert_array_equal(outputs, np.ones((2, 3, 4, 4), np.float32))


@requires_gpu("tensorrt", "cupy")
def test_a_plan_that_is_not_one_is_a_format_error():
    with pytest.raises(ModelFormatError, match="cannot deserialize"):
        TensorRTBackend(b"not a plan", name="tiny", device="cuda")


# --- TensorRT 10 and 11: the builder's names, and what each major version is asked for ------------


def test_tensorrt_api_list_names_every_module_level_name_the_backend_uses():
    source = Path(tensorrt_module.__file__).read_text()
    used = set(re.findall(r"\btrt\.([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Z][A-Za-z0-9_]*)?)", source)) - {"__version__"}

    assert used, "the pattern found no trt.<name> at all"
    assert used <= set(TENSORRT_API), f"used but not in TENSORRT_API: {sorted(used - set(TENSORRT_API))}"


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is None, reason="needs tensorrt (not installed)")
def test_tensorrt_api_list_when_tensorrt_imports_resolves_on_the_installed_version():
    trt = pytest.importorskip("tensorrt")  # its native libraries must load too
    major = int(trt.__version__.split(".")[0])
    missing = [name for name in TENSORRT_API if not _resolves(trt, name)]

    assert 10 <= major < 12, f"TensorRT {trt.__version__} is outside the pinned >=10,<12"
    assert [name for name in missing if name not in TENSORRT_OPTIONAL] == []
    assert ("BuilderFlag.FP16" in missing) == (major >= 11)


def _resolves(module: object, dotted: str) -> bool:
    target = module
    for part in dotted.split("."):
        if not hasattr(target, part):
            return False
        target = getattr(target, part)
    return True


def _shaped_like(major: int) -> SimpleNamespace:
    """The two names build_recipe reads, as TensorRT 10 and 11 spell them (11 has no BuilderFlag.FP16)."""
    flags = {"FP16": "BuilderFlag.FP16", "TF32": "BuilderFlag.TF32"} if major == 10 else {"TF32": "BuilderFlag.TF32"}
    return SimpleNamespace(
        BuilderFlag=SimpleNamespace(**flags),
        NetworkDefinitionCreationFlag=SimpleNamespace(STRONGLY_TYPED=1),  # its value in both
    )


@pytest.mark.parametrize("fp16", [False, True])
def test_build_recipe_when_tensorrt_10_is_weakly_typed_and_sets_fp16_only_when_asked(fp16):
    recipe = build_recipe(_shaped_like(10), fp16)

    assert recipe.network_flags == 0
    assert recipe.fp16_flag == ("BuilderFlag.FP16" if fp16 else None)
    assert not recipe.convert_to_fp16


@pytest.mark.parametrize("fp16", [False, True])
def test_build_recipe_when_tensorrt_11_is_strongly_typed_and_never_sets_a_precision_flag(fp16):
    recipe = build_recipe(_shaped_like(11), fp16)

    assert recipe.network_flags == 1 << 1
    assert recipe.fp16_flag is None
    assert recipe.convert_to_fp16 == fp16


def test_fp16_onnx_when_converted_keeps_float32_inputs_and_outputs_and_computes_the_same():
    import onnxruntime

    model = _conv_model()
    converted = fp16_onnx(model)
    graph = onnx.load_from_string(converted).graph
    batch = np.random.default_rng(0).random((2, 3, 8, 8), dtype=np.float32)

    def run(serialized: bytes) -> np.ndarray:
        session = onnxruntime.InferenceSession(serialized, providers=["CPUExecutionProvider"])
        return session.run(None, {"x": batch})[0]

    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert {init.data_type for init in graph.initializer} == {onnx.TensorProto.FLOAT16}
    np.testing.assert_allclose(run(converted), run(model), rtol=1e-2, atol=1e-2)


def _conv_model() -> bytes:
    """A 3x3 convolution, 3 -> 4 channels, with random float32 weights: (batch, 3, 8, 8) -> (batch, 4, 6, 6)."""
    weights = np.random.default_rng(1).standard_normal((4, 3, 3, 3)).astype(np.float32)
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Conv", ["x", "w"], ["y"])],
        "conv",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["batch", 4, 6, 6])],
        initializer=[onnx.numpy_helper.from_array(weights, "w")],
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()
