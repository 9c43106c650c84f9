"""read_onnx_facts against the onnx package itself, on the real model files and on what is no model."""

from __future__ import annotations

import subprocess
import sys

import onnx
import pytest

from streamer.engine.onnx_proto import read_onnx_facts
from streamer.engine.providers.embedded import EMBEDDED, locate


def onnx_says(data: bytes) -> tuple[dict[str, str], int, list[int | None]]:
    model = onnx.load_from_string(data)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    first = [dim.dim_value if dim.HasField("dim_value") else None for dim in dims]
    return {prop.key: prop.value for prop in model.metadata_props}, len(model.graph.node), first


@pytest.mark.parametrize("model_id", ["centerface", "nudenet-320n", "ppocr-text-direction"])
def test_read_onnx_facts_when_the_file_is_a_real_model_agrees_with_the_onnx_package(model_id):
    data = locate(EMBEDDED[model_id]).read_bytes()

    facts = read_onnx_facts(data)

    assert (facts.metadata, facts.nodes, facts.first_input_dims) == onnx_says(data)


def test_read_onnx_facts_when_the_first_input_is_symbolic_gives_none(yolo_path):
    facts = read_onnx_facts(yolo_path.read_bytes())

    assert facts.first_input_dims[0] is None and facts.metadata["author"].startswith("Ultralytics")


@pytest.mark.parametrize(
    "data", [b"this is not a model\n", b"\x0a\xff\xff\xff\xff\x0f", b"\x08\x80\x80\x80", b"\x00\x01"],
    ids=["text", "length past the end", "cut inside a number", "field zero"],
)
def test_read_onnx_facts_when_the_bytes_are_no_protobuf_raises_value_error(data):
    with pytest.raises(ValueError):
        read_onnx_facts(data)


def test_read_onnx_facts_when_a_real_model_is_cut_in_half_raises_value_error():
    data = locate(EMBEDDED["centerface"]).read_bytes()

    with pytest.raises(ValueError, match="cut short"):
        read_onnx_facts(data[: len(data) // 2])


def test_resolving_a_model_file_does_not_import_onnx(yolo_path):
    code = (
        "import sys; from pathlib import Path; from streamer.engine.entities import LoadOptions; "
        f"from streamer.engine.resolve import document_for_file; d = document_for_file(Path({str(yolo_path)!r}), "
        "LoadOptions()); print(d.architecture, 'onnx' in sys.modules)"
    )

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)

    assert done.stdout.split() == ["yolo", "False"]
