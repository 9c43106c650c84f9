"""The ONNX graph as a torch program that keeps its shape arithmetic as Python values.

onnx2torch turns each ONNX node into a module, but its shape arithmetic (Shape -> Gather -> Reshape,
Range, Expand) goes through tensors whose values TorchScript tracing bakes in as constants and that
`torch.export` cannot follow. `OnnxProgram` runs the converted modules in ONNX order and keeps those
small shape tensors as Python values instead (traced sizes while tracing, symbolic sizes while
exporting), so batch, height and width stay as dynamic as the ONNX graph had them.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
from typing import Any

import numpy as np

from ...errors import ModelFormatError
from .importer import gist

SMALL_CONSTANT = 64  # initializers up to this many values (0-D or 1-D) are also kept as Python values


@dataclasses.dataclass
class Values:
    """A small 0-D or 1-D tensor of the ONNX graph held as Python values: ints and floats, or sizes
    that a tracer or exporter follows (0-D tensors while tracing, symbolic ints while exporting).

    `ref` is a tensor of the graph the values came from, so tensors made from them land on its device;
    `tensor` the constant's own buffer, and `real` a plain copy for the onnx2torch modules that read a
    constant argument's values (a resize's scales, a split's sizes)."""

    values: list[Any]
    scalar: bool
    dtype: Any
    ref: Any = None
    tensor: Any = None
    real: Any = None


@dataclasses.dataclass(frozen=True)
class Step:
    """One ONNX node: its op, attributes, all its inputs, the inputs its module takes, its outputs."""

    op_type: str
    attributes: dict[str, Any]
    inputs: tuple[str, ...]
    module_inputs: tuple[str, ...]
    outputs: tuple[str, ...]


# onnx2torch modules that read these ops' non-data inputs as values (tolist, item, numpy).
READS_ARGUMENT_VALUES = {
    "Resize", "Upsample", "Split", "Slice", "Reshape", "Expand", "Tile", "Pad", "ConstantOfShape", "Range", "TopK",
    "Unsqueeze", "Squeeze", "ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1",
    "ReduceL2", "ReduceLogSumExp", "ReduceSumSquare", "CumSum", "ScatterND",
}  # fmt: skip


def build_program(torch: Any, onnx2torch: Any, model: Any, name: str) -> Any:
    """The ONNX graph as an `OnnxProgram` over onnx2torch's modules, in inference mode."""
    from onnx2torch.onnx_graph import OnnxGraph

    try:
        converted = onnx2torch.convert(model, attach_onnx_mapping=True)
    except Exception as exc:  # NotImplementedError for an unsupported attribute, others from odd graphs
        raise ModelFormatError(f"{name}: onnx2torch cannot convert it: {gist(exc)}") from exc
    steps, modules = [], []
    for unique_name, node in OnnxGraph(model.graph).nodes.items():
        if node.operation_type == "Constant" and "value" in node.attributes:
            continue  # its value becomes a constant below
        module = converted.get_submodule(unique_name)
        steps.append(_step(node, module))
        modules.append(module)
    weights = {initializer.name for initializer in model.graph.initializer}
    inputs = [value.name for value in model.graph.input if value.name not in weights]
    outputs = [value.name for value in model.graph.output]
    constants = _constants(torch, model, steps, outputs)
    return _program_class(torch)(steps, modules, constants, inputs[0], outputs).eval()


def _step(node: Any, module: Any) -> Step:
    import onnx
    from onnx import numpy_helper

    attributes = {}
    for attribute in node.proto.attribute:
        value = onnx.helper.get_attribute_value(attribute)
        attributes[attribute.name] = numpy_helper.to_array(value) if isinstance(value, onnx.TensorProto) else value
    return Step(
        node.operation_type,
        attributes,
        tuple(node.proto.input),
        tuple(module.onnx_mapping.inputs),
        tuple(node.proto.output),
    )


def _constants(torch: Any, model: Any, steps: list[Step], outputs: list[str]) -> dict[str, Any]:
    """The initializers and `Constant` values the steps read or the graph returns, as tensors (not the
    weights onnx2torch's modules hold already)."""
    from onnx import numpy_helper

    found = {initializer.name: initializer for initializer in model.graph.initializer}
    for node in model.graph.node:
        value = next((attribute.t for attribute in node.attribute if attribute.name == "value"), None)
        if node.op_type == "Constant" and value is not None:
            found[node.output[0]] = value
    read = {name for step in steps for name in step.module_inputs}
    read |= {name for step in steps if step.op_type in SHAPE_OPS for name in step.inputs} | set(outputs)
    return {name: torch.from_numpy(np.array(numpy_helper.to_array(found[name]))) for name in read if name in found}


@functools.lru_cache(maxsize=1)
def _program_class(torch: Any) -> type:
    class OnnxProgram(torch.nn.Module):
        """Runs onnx2torch's modules in ONNX order; see the module docstring and `Values`."""

        def __init__(self, steps, modules, constants, input_name, outputs) -> None:  # type: ignore[no-untyped-def]
            super().__init__()
            self.ops = torch.nn.ModuleList(modules)
            self.steps, self.input_name, self.outputs = steps, input_name, outputs
            self.constant_buffers: dict[str, str] = {}
            self.small: dict[str, tuple[list[Any], bool, Any]] = {}
            for index, (onnx_name, tensor) in enumerate(constants.items()):
                self.register_buffer(f"constant_{index}", tensor)
                self.constant_buffers[onnx_name] = f"constant_{index}"
                if tensor.dim() <= 1 and tensor.numel() <= SMALL_CONSTANT:
                    self.small[onnx_name] = (tensor.reshape(-1).tolist(), tensor.dim() == 0, tensor.clone())

        def forward(self, images):  # type: ignore[no-untyped-def]
            env: dict[str, Any] = {self.input_name: images}
            for onnx_name, buffer_name in self.constant_buffers.items():
                buffer = getattr(self, buffer_name)
                if onnx_name in self.small:
                    values, scalar, real = self.small[onnx_name]
                    env[onnx_name] = Values(list(values), scalar, buffer.dtype, tensor=buffer, real=real)
                else:
                    env[onnx_name] = buffer
            for step, module in zip(self.steps, self.ops):
                env.update(zip(step.outputs, run_step(torch, step, module, env)))
            results = [as_tensor(torch, env[name]) for name in self.outputs]
            return results[0] if len(results) == 1 else tuple(results)

    return OnnxProgram


def run_step(torch: Any, step: Step, module: Any, env: dict[str, Any]) -> list[Any]:
    """The node's outputs: computed on Python values when its inputs are shape values, else by its module."""
    handler = SHAPE_OPS.get(step.op_type)
    values = [env.get(name) for name in step.inputs]  # weights onnx2torch folded into modules: None
    if handler is not None and (step.op_type == "Shape" or any(isinstance(value, Values) for value in values)):
        result = handler(torch, step, values)
        if result is not None:
            return result
    inputs = [env[name] if name else None for name in step.module_inputs]
    args = [_module_argument(torch, step, index, value) for index, value in enumerate(inputs)]
    kwargs: dict[str, Any] = {}
    if None in args:  # onnx2torch passes skipped optional inputs by keyword
        first = args.index(None)
        parameters = tuple(inspect.signature(module.forward).parameters)[first : len(args)]
        kwargs = {key: value for key, value in zip(parameters, args[first:]) if value is not None}
        args = args[:first]
    output = module(*args, **kwargs)
    return list(output) if isinstance(output, (tuple, list)) else [output]


def _module_argument(torch: Any, step: Step, index: int, value: Any) -> Any:
    if not isinstance(value, Values):
        return value
    if index > 0 and step.op_type in READS_ARGUMENT_VALUES and value.real is not None:
        return value.real
    return as_tensor(torch, value)


def as_tensor(torch: Any, value: Any) -> Any:
    """A tensor for a value: the constant's buffer, or one built from the (possibly traced) values."""
    if not isinstance(value, Values):
        return value
    if value.tensor is not None:
        return value.tensor
    items = [item if isinstance(item, torch.Tensor) else torch.scalar_tensor(item) for item in value.values]
    stacked = torch.stack([item.to(value.dtype) for item in items])
    if value.ref is not None:
        stacked = stacked.to(value.ref.device)
    return stacked[0] if value.scalar else stacked


def _derived(values: list[Any], scalar: bool, dtype: Any, *sources: Values) -> Values:
    ref = next((source.ref for source in sources if source.ref is not None), None)
    return Values(values, scalar, dtype, ref=ref)


def _shape(torch: Any, step: Step, values: list[Any]) -> list[Any] | None:
    data = values[0]
    dims = [len(data.values)] if isinstance(data, Values) else list(data.shape)
    start, end = step.attributes.get("start", 0), step.attributes.get("end")
    ref = data.ref if isinstance(data, Values) else data
    return [Values(dims[start:end], False, torch.int64, ref=ref)]


def _gather(torch: Any, step: Step, values: list[Any]) -> list[Any] | None:
    data, indices = values
    if not (isinstance(data, Values) and isinstance(indices, Values)) or data.scalar or step.attributes.get("axis", 0):
        return None
    if not all(isinstance(index, int) for index in indices.values):
        return None
    picked = [data.values[index] for index in indices.values]
    return [_derived(picked, indices.scalar, data.dtype, data)]


def _unsqueeze(torch: Any, step: Step, values: list[Any]) -> list[Any] | None:
    data = values[0]
    given = values[1] if len(values) > 1 else None
    axes = step.attributes.get("axes") or (given.values if isinstance(given, Values) else None)
    if not isinstance(data, Values) or not data.scalar or list(axes or []) not in ([0], [-1]):
        return None
    return [_derived(list(data.values), False, data.dtype, data)]


def _squeeze(torch: Any, step: Step, values: list[Any]) -> list[Any] | None:
    data = values[0]
    if not isinstance(data, Values) or data.scalar or len(data.values) != 1:
        return None
    return [_derived(list(data.values), True, data.dtype, data)]


def _cast(torch: Any, step: Step, values: list[Any]) -> list[Any] | None:
    from onnx.helper import tensor_dtype_to_np_dtype

    data = values[0]
    dtype = torch.from_numpy(np.zeros(0, tensor_dtype_to_np_dtype(step.attributes["to"]))).dtype
    if dtype.is_floating_point:
        converted = list(data.values)
    elif dtype != torch.bool:
        converted = [int(item) if isinstance(item, float) else item for item in data.values]
    else:
        return None
    return [_derived(converted, data.scalar, dtype, data)]


def _concat(torch: Any, step: Step, values: list[Any]) -> list[Any] | None:
    if not all(isinstance(value, Values) and not value.scalar for value in values):
        return None
    if step.attributes.get("axis", 0) not in (0, -1):
        return None
    joined = [item for value in values for item in value.values]
    return [_derived(joined, False, values[0].dtype, *values)]


def _identity(torch: Any, step: Step, values: list[Any]) -> list[Any] | None:
    return [values[0]]


def _arithmetic(torch: Any, step: Step, values: list[Any]) -> list[Any] | None:
    first, second = values
    if not (isinstance(first, Values) and isinstance(second, Values)):
        return None
    integral = not first.dtype.is_floating_point
    if step.op_type == "Div" and not integral:
        return None
    operation = {
        "Add": lambda a, b: a + b,
        "Sub": lambda a, b: a - b,
        "Mul": lambda a, b: a * b,
        "Div": lambda a, b: a // b,
    }[step.op_type]
    length = max(len(first.values), len(second.values))
    left = first.values * length if len(first.values) == 1 else first.values
    right = second.values * length if len(second.values) == 1 else second.values
    if len(left) != len(right):
        return None
    result = [operation(a, b) for a, b in zip(left, right)]
    return [_derived(result, first.scalar and second.scalar, first.dtype, first, second)]


def _slice(torch: Any, step: Step, values: list[Any]) -> list[Any] | None:
    data, *bounds = values
    if not all(isinstance(bound, Values) for bound in bounds if bound is not None):
        return None
    starts, ends = bounds[0].values, bounds[1].values
    rank = 1 if isinstance(data, Values) else data.dim()
    axes = bounds[2].values if len(bounds) > 2 and bounds[2] is not None else list(range(len(starts)))
    steps = bounds[3].values if len(bounds) > 3 and bounds[3] is not None else [1] * len(starts)
    if not all(isinstance(item, int) for item in (*starts, *ends, *axes, *steps)) or min(steps) < 1:
        return None
    index = [slice(None)] * rank
    for start, end, axis, stride in zip(starts, ends, axes, steps):
        index[axis] = slice(start, end, stride)
    if isinstance(data, Values):
        return None if data.scalar else [_derived(data.values[index[0]], False, data.dtype, data)]
    return [data[tuple(index)]]


def _range(torch: Any, step: Step, values: list[Any]) -> list[Any] | None:
    start, limit, delta = values
    if not all(isinstance(value, Values) for value in values):
        return None
    start_value, limit_value, delta_value = start.values[0], limit.values[0], delta.values[0]
    if not all(_is_whole(item) for item in (start_value, delta_value)) or int(delta_value) <= 0:
        return None
    first, stride = int(start_value), int(delta_value)
    if isinstance(limit_value, (int, float)):
        count: Any = max(0, math.ceil((limit_value - first) / stride))
    else:  # a traced or symbolic size: ceil((limit - first) / stride) in integers
        count = (limit_value - first + stride - 1) // stride
    ref = limit.ref if limit.ref is not None else start.ref
    if ref is None:
        return None
    ramp = ref.new_ones((count,), dtype=limit.dtype).cumsum(0) - 1  # arange on ref's device, traced or exported
    return [ramp * stride + first if (stride, first) != (1, 0) else ramp]


def _constant_of_shape(torch: Any, step: Step, values: list[Any]) -> list[Any] | None:
    shape = values[0]
    value = step.attributes.get("value")
    fill = torch.from_numpy(np.array(value)).reshape(-1) if value is not None else torch.zeros(1)
    if shape.ref is None:
        return None
    return [shape.ref.new_full(list(shape.values), fill.item(), dtype=fill.dtype)]


def _reshape(torch: Any, step: Step, values: list[Any]) -> list[Any] | None:
    data, shape = values
    if isinstance(data, Values) or not isinstance(shape, Values) or step.attributes.get("allowzero", 0):
        return None
    dims = [data.shape[index] if isinstance(dim, int) and dim == 0 else dim for index, dim in enumerate(shape.values)]
    return [data.reshape(dims)]


def _expand(torch: Any, step: Step, values: list[Any]) -> list[Any] | None:
    data, shape = values
    if isinstance(data, Values) or not isinstance(shape, Values):
        return None
    return [data * data.new_ones(list(shape.values))]  # ONNX Expand broadcasts both ways, as `*` does


def _is_whole(value: Any) -> bool:
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value) and value.is_integer())


SHAPE_OPS = {
    "Shape": _shape,
    "Gather": _gather,
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Cast": _cast,
    "Concat": _concat,
    "Identity": _identity,
    "Add": _arithmetic,
    "Sub": _arithmetic,
    "Mul": _arithmetic,
    "Div": _arithmetic,
    "Slice": _slice,
    "Range": _range,
    "ConstantOfShape": _constant_of_shape,
    "Reshape": _reshape,
    "Expand": _expand,
}
