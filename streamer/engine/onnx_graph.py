"""Small rewrites of ONNX graphs, done once at load time with the `onnx` package."""

from __future__ import annotations

from typing import Any


def with_dynamic_shapes(model_bytes: bytes, names: dict[str, list[str | int]]) -> bytes:
    """Give the named graph inputs/outputs symbolic dimensions (e.g. a dynamic batch).

    Weights that old exporters also listed as graph inputs are dropped from the inputs, so ONNX
    Runtime may fold them as constants.
    """
    import onnx

    model = onnx.load_from_string(model_bytes)
    _drop_initializer_inputs(model.graph)
    del model.graph.value_info[:]  # stale fixed shapes of intermediate values; ORT re-infers them
    for value in [*model.graph.input, *model.graph.output]:
        if value.name in names:
            _set_dims(value, names[value.name])
    return model.SerializeToString()


def _drop_initializer_inputs(graph: Any) -> None:
    weights = {initializer.name for initializer in graph.initializer}
    kept = [value for value in graph.input if value.name not in weights]
    del graph.input[:]
    graph.input.extend(kept)


def _set_dims(value: Any, dims: list[str | int]) -> None:
    shape = value.type.tensor_type.shape
    for dim, new in zip(shape.dim, dims):
        if isinstance(new, str):
            dim.ClearField("dim_value")
            dim.dim_param = new
        else:
            dim.ClearField("dim_param")
            dim.dim_value = new
