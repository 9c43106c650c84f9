"""The few facts of an ONNX file that resolving needs, read from the protobuf wire format itself.

Importing the `onnx` package takes a second or more and holds the GIL meanwhile (its ml_dtypes
extension), which would freeze an event loop even from a worker thread. Resolving only needs the
metadata, whether there is a graph with nodes, and the first input's shape, so it reads them here:
fields it does not need (weights among them) are skipped by length, never decoded or copied.

    ModelProto       graph = 7, metadata_props = 14 (key = 1, value = 2)
    GraphProto       node = 1, input = 11
    ValueInfoProto   type = 2 -> TypeProto tensor_type = 1 -> shape = 2 -> dim = 1
    Dimension        dim_value = 1, dim_param = 2
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5
FIXED_SIZES = {FIXED64: 8, FIXED32: 4}


@dataclass
class OnnxFacts:
    """`first_input_dims`: each dimension of the first graph input, an int or None when symbolic."""

    metadata: dict[str, str] = field(default_factory=dict)
    nodes: int = 0
    first_input_dims: list[int | None] = field(default_factory=list)


def read_onnx_facts(data: bytes) -> OnnxFacts:
    """The facts of a serialized ModelProto; ValueError when the bytes are not a protobuf message."""
    facts = OnnxFacts()
    for number, value in _fields(memoryview(data)):
        if number == 7:
            _read_graph(_message(value), facts)
        elif number == 14:
            entry = dict(_strings(_message(value)))
            facts.metadata[entry.get(1, "")] = entry.get(2, "")
    return facts


def _read_graph(graph: memoryview, facts: OnnxFacts) -> None:
    for number, value in _fields(graph):
        if number == 1:
            facts.nodes += 1
        elif number == 11 and not facts.first_input_dims:
            facts.first_input_dims = _input_dims(_message(value)) or [None]


def _input_dims(value_info: memoryview) -> list[int | None]:
    """The dims of ValueInfoProto.type.tensor_type.shape ([] for a value of another type)."""
    shape = _submessage(_submessage(_submessage(value_info, 2), 1), 2)
    return [_dim(_message(dim)) for number, dim in _fields(shape) if number == 1]


def _dim(dimension: memoryview) -> int | None:
    for number, value in _fields(dimension):
        if number == 1 and isinstance(value, int):
            return value - (1 << 64) if value >= 1 << 63 else value  # an int64: -1 comes as 2**64 - 1
    return None


def _submessage(message: memoryview, wanted: int) -> memoryview:
    """The first field `wanted` of `message` as a message (empty when absent)."""
    return next((_message(value) for number, value in _fields(message) if number == wanted), memoryview(b""))


def _strings(message: memoryview) -> Iterator[tuple[int, str]]:
    for number, value in _fields(message):
        yield number, bytes(_message(value)).decode("utf-8", errors="replace")


def _message(value: int | memoryview) -> memoryview:
    if isinstance(value, int):
        raise ValueError("a number where a message or string belongs")
    return value


def _fields(data: memoryview) -> Iterator[tuple[int, int | memoryview]]:
    """(field number, value) of each field of one message: an int for a varint, else the bytes."""
    position = 0
    while position < len(data):
        key, position = _varint(data, position)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise ValueError(f"field number 0 at byte {position}")
        if wire_type == VARINT:
            value, position = _varint(data, position)
            yield number, value
            continue
        if wire_type == LENGTH:
            size, position = _varint(data, position)
        elif wire_type in FIXED_SIZES:
            size = FIXED_SIZES[wire_type]
        else:
            raise ValueError(f"wire type {wire_type} at byte {position} (groups and garbage are not ONNX)")
        if position + size > len(data):
            raise ValueError(f"a field runs {position + size - len(data)} bytes past the end (cut short?)")
        yield number, data[position : position + size]
        position += size


def _varint(data: memoryview, position: int) -> tuple[int, int]:
    result = shift = 0
    while shift < 70:
        if position >= len(data):
            raise ValueError("the data ends inside a number (cut short?)")
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7
    raise ValueError(f"a number longer than 10 bytes at byte {position}")
