"""describe_compute_environment on this machine, and the table `streamer describe env` prints."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys

import pytest

from streamer.engine.entities import ComputeEnvironment, GpuInfo
from streamer.engine.environment import (
    CUPY_DISTRIBUTIONS,
    ONNXRUNTIME_DISTRIBUTIONS,
    TENSORRT_DISTRIBUTIONS,
    conflicting_onnxruntime,
    describe_backends,
    describe_compute_environment,
    installed_version,
    max_onnx_opset,
    opset_for_onnxruntime,
    parse_cuda_version,
    parse_nvidia_smi_gpus,
    render_environment,
)


def _version(*names: str) -> str | None:
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return None


@pytest.fixture(scope="module")
def env() -> ComputeEnvironment:
    return describe_compute_environment()


def test_the_library_versions_match_the_installed_distributions(env):
    assert env.onnxruntime_version == _version(*ONNXRUNTIME_DISTRIBUTIONS)
    assert env.torch_version == _version("torch")
    assert env.tensorrt_version == _version(*TENSORRT_DISTRIBUTIONS)
    assert env.cupy_version == _version(*CUPY_DISTRIBUTIONS)


def test_onnxruntime_providers_are_the_ones_it_reports(env):
    import onnxruntime

    assert env.onnxruntime_version is not None  # a core dependency
    assert env.onnxruntime_providers == onnxruntime.get_available_providers()
    assert "CPUExecutionProvider" in env.onnxruntime_providers
    assert "onnxruntime" in env.installed_backends()


def test_max_onnx_opset_comes_from_the_runtime_table_or_the_onnx_library(env):
    import onnx

    known = opset_for_onnxruntime(env.onnxruntime_version)
    assert env.max_onnx_opset == (known if known is not None else onnx.defs.onnx_opset_version())


def test_torch_cuda_only_with_torch(env):
    if env.torch_version is None:
        assert env.torch_cuda is False
    else:
        import torch

        assert env.torch_cuda == torch.cuda.is_available()


def test_gpus_are_well_formed(env):
    for gpu in env.gpus:
        assert isinstance(gpu, GpuInfo)
        assert re.fullmatch(r"\d+\.\d+", gpu.compute_capability)
    assert [gpu.index for gpu in env.gpus] == sorted({gpu.index for gpu in env.gpus})
    if not env.gpus:
        assert env.cuda_version is None


def test_the_machine_fields_are_filled(env):
    assert env.os and env.python.startswith(f"{sys.version_info.major}.{sys.version_info.minor}")
    assert env.cpu_count >= 1


def probe_in_new_process(scope: str, *printed: str) -> list[str]:
    """`describe_compute_environment(ProbeScope(<scope>))` in a fresh interpreter; the `printed`
    expressions (of `env` and `sys`) afterwards, split into words."""
    code = (
        "import sys; from streamer.engine.entities import ProbeScope; "
        "from streamer.engine.environment import describe_compute_environment; "
        f"env = describe_compute_environment(ProbeScope({scope})); print({', '.join(printed)})"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    return done.stdout.split()


def test_describe_compute_environment_when_scoped_to_onnxruntime_on_cpu_imports_neither_torch_nor_onnx():
    torch_version, provider, torch_imported, onnx_imported = probe_in_new_process(
        "backends=frozenset({'onnxruntime'}), gpus=False, onnx_opset=False",
        "env.torch_version", "env.onnxruntime_providers[-1]", "'torch' in sys.modules", "'onnx' in sys.modules",
    )

    assert torch_version == str(_version("torch"))  # still known: from the distribution's metadata
    assert provider == "CPUExecutionProvider"
    assert (torch_imported, onnx_imported) == ("False", "False")


def test_describe_compute_environment_when_a_gpu_is_asked_and_nothing_else_sees_one_asks_torch_last():
    gpus, torch_imported = probe_in_new_process(
        "backends=frozenset({'onnxruntime'}), gpus=True", "len(env.gpus)", "'torch' in sys.modules"
    )

    # Either CuPy or nvidia-smi found a GPU, or PyTorch was asked as well (when it is installed).
    assert int(gpus) > 0 or torch_imported == str(_version("torch") is not None)


def test_probing_is_quick_and_leaves_absent_libraries_unimported():
    code = (
        "import sys, time; from streamer.engine.environment import describe_compute_environment; "
        "start = time.monotonic(); describe_compute_environment(); "
        "print(time.monotonic() - start, 'torch' in sys.modules, 'tensorrt' in sys.modules)"
    )

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)

    seconds, torch_imported, tensorrt_imported = done.stdout.split()
    assert float(seconds) < 20
    assert torch_imported == str(_version("torch") is not None)
    assert tensorrt_imported == "False"  # only its version is read


def test_importing_the_module_imports_no_library():
    code = (
        "import sys; import streamer.engine.environment; "
        "print([m for m in ('onnxruntime', 'onnx', 'torch', 'cupy', 'tensorrt') if m in sys.modules])"
    )

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)

    assert done.stdout.strip() == "[]"


def test_installed_version_tries_each_name_and_reads_none_for_absent_ones():
    assert installed_version("no-such-distribution-xyz", "onnxruntime") == _version("onnxruntime")
    assert installed_version("no-such-distribution-xyz") is None


def test_conflicting_onnxruntime_lists_side_by_side_builds():
    present = [name for name in ONNXRUNTIME_DISTRIBUTIONS if _version(name) is not None]

    assert conflicting_onnxruntime() == (present if len(present) > 1 else [])


@pytest.mark.parametrize(("version", "opset"), [("1.20.1", 21), ("1.17.3", 20), ("1.10.0", 15), ("1.99.0", None)])
def test_opset_for_onnxruntime_reads_the_published_table(version, opset):
    assert opset_for_onnxruntime(version) == opset


def test_max_onnx_opset_prefers_the_runtime_table():
    assert max_onnx_opset("1.18.0") == 21


def test_parse_nvidia_smi_gpus():
    listing = "0, NVIDIA H100 80GB HBM3, 9.0, 81559\n1, Tesla P4, 6.1, [N/A]\n"

    assert parse_nvidia_smi_gpus(listing) == [
        GpuInfo(index=0, name="NVIDIA H100 80GB HBM3", compute_capability="9.0", memory_mb=81559),
        GpuInfo(index=1, name="Tesla P4", compute_capability="6.1", memory_mb=None),
    ]


def test_parse_nvidia_smi_gpus_rejects_an_unknown_field():
    with pytest.raises(ValueError, match="unexpected nvidia-smi line"):
        parse_nvidia_smi_gpus("0, Tesla K80, [N/A], 11441\n")


def test_parse_cuda_version_reads_the_banner():
    banner = "| NVIDIA-SMI 550.54.15    Driver Version: 550.54.15    CUDA Version: 12.4     |"

    assert parse_cuda_version(banner) == "12.4"
    assert parse_cuda_version("") is None


def test_render_environment_of_this_machine_has_the_key_rows(env):
    text = render_environment(env)

    keys = [line.split("  ")[0].strip() for line in text.splitlines()]
    for key in ("os", "python", "cpus", "onnxruntime", "max onnx opset", "torch", "tensorrt", "cuda", "backends"):
        assert key in keys
    assert f"onnxruntime     {env.onnxruntime_version} (" in text


def test_render_environment_aligns_values_and_lists_each_gpu():
    h100 = ComputeEnvironment(
        os="Linux",
        python="3.11.9",
        cpu_count=16,
        gpus=[GpuInfo(index=0, name="NVIDIA H100 80GB HBM3", compute_capability="9.0", memory_mb=81559)],
        cuda_version="12.4",
        onnxruntime_version="1.20.1",
        onnxruntime_providers=["CUDAExecutionProvider", "CPUExecutionProvider"],
        max_onnx_opset=21,
        torch_version="2.4.1+cu124",
        torch_cuda=True,
        tensorrt_version="10.3.0",
    )

    lines = render_environment(h100).splitlines()

    assert "gpu 0           NVIDIA H100 80GB HBM3, compute capability 9.0, 81559 MiB" in lines
    assert "torch           2.4.1+cu124 (CUDA available)" in lines
    assert "backends        onnxruntime (cpu, cuda), torch (cpu, cuda), tensorrt (cuda)" in lines
    assert all(re.match(r".{14}  \S", line) for line in lines)  # every value starts after the widest key


def test_describe_backends_on_a_bare_machine():
    assert describe_backends(ComputeEnvironment()) == "none (pip install onnxruntime)"
    cpu_build_on_gpu = ComputeEnvironment(
        onnxruntime_version="1.20.1",
        onnxruntime_providers=["CPUExecutionProvider"],
        gpus=[GpuInfo(index=0, name="T4", compute_capability="7.5")],
    )
    assert describe_backends(cpu_build_on_gpu) == "onnxruntime (cpu)"
