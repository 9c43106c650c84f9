"""PyTorch backend: TorchScript and torch.export programs on the CPU; state dicts loaded safely."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from streamer.importing import import_optional
from streamer.engine.backends.torch import TorchBackend, decode_metadata, flatten_outputs, load_state_dict
from streamer.errors import MissingDependencyError, ModelFormatError, ModelNotFoundError, ParameterError

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.filterwarnings(r"ignore:`torch\.jit\.\w+` is deprecated:DeprecationWarning")

METADATA = {"task": "classify", "names": {"0": "cat", "1": "dog"}}


class TinyNet(torch.nn.Module):
    """conv + global average pool: (N, 3, H, W) -> scores (N, 2) and their sum (N,)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 2, kernel_size=3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores = self.conv(x).mean(dim=(2, 3))
        return scores, scores.sum(dim=1)


class Unpicklable:
    """An arbitrary class: a state dict holding one must be refused."""


@pytest.fixture(scope="module")
def net() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet().eval()


@pytest.fixture(scope="module")
def torchscript_path(net: TinyNet, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("torch") / "tiny.torchscript"
    torch.jit.save(torch.jit.script(net), str(path), _extra_files={"metadata.json": json.dumps(METADATA)})
    return path


@pytest.fixture(scope="module")
def export_path(net: TinyNet, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("torch") / "tiny.pt2"
    batch = torch.export.Dim("batch", min=1, max=16)
    program = torch.export.export(net, (torch.rand(2, 3, 8, 8),), dynamic_shapes={"x": {0: batch}})
    torch.export.save(program, str(path), extra_files={"metadata.json": json.dumps(METADATA)})
    return path


def _images(count: int) -> np.ndarray:
    return np.random.default_rng(count).random((count, 3, 8, 8), dtype=np.float32)


def _expected(net: TinyNet, images: np.ndarray) -> list[np.ndarray]:
    with torch.no_grad():
        return [output.numpy() for output in net(torch.from_numpy(images))]


@pytest.mark.parametrize("count", [1, 3])
def test_torchscript_outputs_equal_the_modules_own(net, torchscript_path, count):
    backend = TorchBackend(torchscript_path, name="tiny", format="torchscript")
    images = _images(count)

    outputs = backend.run(images)

    assert len(outputs) == 2
    for got, want in zip(outputs, _expected(net, images)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("count", [1, 3])
def test_exported_program_outputs_equal_the_modules_own(net, export_path, count):
    backend = TorchBackend(export_path, name="tiny", format="torch-export")
    images = _images(count)

    outputs = backend.run(images)

    for got, want in zip(outputs, _expected(net, images)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_torchscript_describes_itself(torchscript_path):
    backend = TorchBackend(torchscript_path, name="tiny", format="torchscript")

    assert backend.name == "torch-cpu"
    assert backend.input_dtype == np.float32
    assert backend.input_shape == ["batch", 3, "height", "width"]
    assert backend.fixed_batch is None
    assert backend.metadata == {"task": "classify", "names": '{"0": "cat", "1": "dog"}'}


def test_exported_program_reads_its_input_shape_and_metadata(export_path):
    backend = TorchBackend(export_path, name="tiny", format="torch-export")

    assert backend.input_shape == ["batch", 3, 8, 8]
    assert backend.fixed_batch is None
    assert backend.metadata["task"] == "classify"


def test_given_input_shape_and_fixed_batch_win(torchscript_path, net):
    backend = TorchBackend(torchscript_path, name="tiny", format="torchscript", input_shape=[2, 3, 8, 8], fixed_batch=2)
    images = _images(3)

    outputs = backend.run(images)

    assert backend.input_shape == [2, 3, 8, 8]
    np.testing.assert_allclose(outputs[0], _expected(net, images)[0], rtol=1e-5, atol=1e-6)


def test_exported_program_with_a_static_batch_runs_in_padded_chunks(net, tmp_path):
    path = tmp_path / "static.pt2"
    torch.export.save(torch.export.export(net, (torch.rand(2, 3, 8, 8),)), str(path))
    backend = TorchBackend(path, name="static", format="torch-export")
    images = _images(3)

    outputs = backend.run(images)

    assert backend.fixed_batch == 2
    np.testing.assert_allclose(outputs[0], _expected(net, images)[0], rtol=1e-5, atol=1e-6)


def test_half_runs_in_float16_and_returns_float32(net, torchscript_path):
    backend = TorchBackend(torchscript_path, name="tiny", format="torchscript", half=True)
    images = _images(3)
    try:
        outputs = backend.run(images.astype(np.float16))
    except RuntimeError as exc:  # a CPU build without float16 convolutions
        pytest.skip(f"float16 is not supported on this CPU: {exc}")

    assert backend.input_dtype == np.float16
    assert [output.dtype for output in outputs] == [np.float32, np.float32]
    np.testing.assert_allclose(outputs[0], _expected(net, images)[0], atol=2e-2)


def test_threads_sets_the_torch_cpu_pool(torchscript_path):
    before = torch.get_num_threads()
    try:
        TorchBackend(torchscript_path, name="tiny", format="torchscript", threads=2)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_wrong_format_for_the_file_is_a_format_error(torchscript_path, export_path):
    with pytest.raises(ModelFormatError, match="not a torch.export program"):
        TorchBackend(torchscript_path, name="tiny", format="torch-export")
    with pytest.raises(ModelFormatError, match="not a TorchScript archive"):
        TorchBackend(export_path, name="tiny", format="torchscript")


def test_unknown_format_is_a_parameter_error(torchscript_path):
    with pytest.raises(ParameterError, match="format 'pickle'"):
        TorchBackend(torchscript_path, name="tiny", format="pickle")  # type: ignore[arg-type]


def test_missing_file_is_model_not_found(tmp_path):
    with pytest.raises(ModelNotFoundError, match="nope.pt2"):
        TorchBackend(tmp_path / "nope.pt2", name="tiny", format="torch-export")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_cuda_without_a_gpu_says_why(torchscript_path):
    with pytest.raises((MissingDependencyError, ParameterError)) as caught:
        TorchBackend(torchscript_path, name="tiny", format="torchscript", device="cuda")

    assert "tiny: device 'cuda'" in str(caught.value)


def test_state_dict_loads_with_weights_only(net, tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(net.state_dict(), path)

    state = load_state_dict(path)

    assert set(state) == {"conv.weight", "conv.bias"}
    torch.testing.assert_close(state["conv.weight"], net.conv.weight)


def test_state_dict_with_a_pickled_object_is_refused_without_running_it(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"weight": torch.ones(1), "payload": Unpicklable()}, path)

    with pytest.raises(ModelFormatError, match="pickles a Python object .*Unpicklable.*never unpickles code"):
        load_state_dict(path)


def test_state_dict_that_is_not_a_mapping_is_refused(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([torch.ones(1)], path)

    with pytest.raises(ModelFormatError, match="holds a list, not a state dict"):
        load_state_dict(path)


def test_state_dict_that_is_garbage_is_a_format_error(tmp_path):
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"not a checkpoint")

    with pytest.raises(ModelFormatError, match="cannot read it"):
        load_state_dict(path)


def test_missing_optional_library_names_the_extra():
    with pytest.raises(MissingDependencyError, match=r"pip install 'streamer\[torch\]'") as caught:
        import_optional("streamer_no_such_module", extra="torch", what="the PyTorch backend")

    assert isinstance(caught.value, ImportError)


def test_optional_library_whose_native_libraries_fail_to_load_is_missing_too(tmp_path, monkeypatch):
    (tmp_path / "streamer_broken_native.py").write_text("raise OSError('libcudart.so.12: cannot open')\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    with pytest.raises(MissingDependencyError, match=r"libcudart.*streamer\[gpu\]"):
        import_optional("streamer_broken_native", extra="gpu", what="GPU buffers")


def test_flatten_outputs_handles_tensors_sequences_and_dicts():
    a, b, c = torch.zeros(1), torch.ones(1), torch.full((1,), 2.0)

    assert flatten_outputs(a) == [a]
    assert flatten_outputs({"boxes": a, "extra": (b, [c])}) == [a, b, c]


def test_decode_metadata_rejects_json_that_is_not_an_object():
    assert decode_metadata(b"", "tiny") == {}
    with pytest.raises(ModelFormatError, match="metadata.json holds a list"):
        decode_metadata("[1]", "tiny")
    with pytest.raises(ModelFormatError, match="not valid JSON"):
        decode_metadata("{", "tiny")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA build of torch and a GPU")
@pytest.mark.parametrize("half", [False, True])
def test_cuda_outputs_match_the_cpu(net, torchscript_path, export_path, half):
    images = _images(3)
    for path, format in [(torchscript_path, "torchscript"), (export_path, "torch-export")]:
        backend = TorchBackend(path, name="tiny", format=format, device="cuda", half=half)

        outputs = backend.run(images.astype(backend.input_dtype))

        assert backend.name == "torch-cuda"
        np.testing.assert_allclose(outputs[0], _expected(net, images)[0], atol=2e-2 if half else 1e-4)


def test_open_backend_when_a_torchscript_package_declares_a_static_batch_runs_in_chunks_of_it(torchscript_path):
    from streamer.engine.entities import BatchProfile, FileSpec, LoadOptions, ModelPackage
    from streamer.engine.backends.package import open_backend

    package = ModelPackage(
        package_id="tiny-static",
        backend="torch",
        format="torchscript",
        batch=BatchProfile(dynamic=False, size=2),
        files=[FileSpec(name=torchscript_path.name)],
    )

    backend = open_backend(package, {torchscript_path.name: torchscript_path}, LoadOptions(backend="torch"))
    outputs = backend.run(_images(3))

    assert backend.fixed_batch == 2  # TorchScript files record no input shape: the package says it
    assert outputs[0].shape[0] == 3
