"""A stand-in for the few CuPy names the device path uses, over NumPy, for machines without a GPU.

It is used only where a real part cannot run here, and checks plumbing, never numbers: which device
was current when each array came to be (every array, including those NumPy operations make, passes
`__array_finalize__`; views, which allocate nothing, are left out), which stream was current then, and which stream recorded or waited for which
event, in order. The arithmetic is NumPy's, so results equal the host path exactly.
"""

from __future__ import annotations

import types
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Trace:
    """What happened, in order: ("record", stream, event), ("wait", stream, event), ("host_wait", event),
    and for each array made, the (device, stream) current then."""

    steps: list[tuple[Any, ...]] = field(default_factory=list)
    arrays: list[tuple[int, Any]] = field(default_factory=list)


class FakeCuda:
    """`cupy.cuda` as far as the device path goes: Device, Stream, Event, get_current_stream."""

    def __init__(self, trace: Trace) -> None:
        self.trace = trace
        self.devices: list[int] = [0]
        self.streams: dict[int, list[Any]] = {}
        fake = self

        class Event:
            def synchronize(self) -> None:
                fake.trace.steps.append(("host_wait", self))

        class Stream:
            def __init__(self, null: bool = False, non_blocking: bool = False) -> None:
                self.device_id = fake.device_id
                self.ptr = 0 if null else id(self)

            def __enter__(self) -> Stream:
                fake.streams.setdefault(self.device_id, []).append(self)
                return self

            def __exit__(self, *exc: Any) -> None:
                fake.streams[self.device_id].pop()

            def record(self, event: Any = None) -> Any:
                event = event or Event()
                fake.trace.steps.append(("record", self, event))
                return event

            def wait_event(self, event: Any) -> None:
                fake.trace.steps.append(("wait", self, event))

            def synchronize(self) -> None:
                fake.trace.steps.append(("host_wait", self))

        class Device:
            def __init__(self, device_id: int = 0) -> None:
                self.id = device_id

            def __enter__(self) -> Device:
                fake.devices.append(self.id)
                return self

            def __exit__(self, *exc: Any) -> None:
                fake.devices.pop()

        self.Event, self.Stream, self.Device = Event, Stream, Device
        self.null = {}  # per device, its legacy stream

    @property
    def device_id(self) -> int:
        return self.devices[-1]

    def get_current_stream(self) -> Any:
        stack = self.streams.get(self.device_id)
        if stack:
            return stack[-1]
        if self.device_id not in self.null:
            self.null[self.device_id] = self.Stream(null=True)
        return self.null[self.device_id]


def fake_cupy(trace: Trace) -> tuple[types.ModuleType, types.ModuleType]:
    """(cupy, cupyx) modules: NumPy's functions, `cuda` as above, arrays that note where they were made."""
    cuda = FakeCuda(trace)

    def note() -> None:
        trace.arrays.append((cuda.device_id, cuda.get_current_stream()))

    class DeviceArray(np.ndarray):
        def __array_finalize__(self, obj: Any) -> None:
            if self.base is None:  # memory of its own: what an operation made (views allocate nothing)
                note()

        def set(self, host: np.ndarray, stream: Any = None) -> None:
            self[...] = host

        def get(self, stream: Any = None) -> np.ndarray:
            return np.asarray(self).copy()

    def made(function: Any) -> Any:
        def make(*args: Any, **kwargs: Any) -> DeviceArray:
            note()
            return np.asarray(function(*args, **kwargs)).view(DeviceArray)

        return make

    cupy = types.ModuleType("cupy")
    for name in dir(np):
        if not name.startswith("__"):
            setattr(cupy, name, getattr(np, name))
    for name in ("empty", "zeros", "full", "asarray", "arange", "ascontiguousarray"):
        setattr(cupy, name, made(getattr(np, name)))
    cupy.cuda = cuda
    cupy.ndarray = DeviceArray
    cupyx = types.ModuleType("cupyx")
    cupyx.empty_pinned = lambda shape, dtype: np.empty(shape, dtype)  # host memory, as pinned memory is
    return cupy, cupyx
