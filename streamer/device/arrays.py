"""Where arrays live: NumPy on the host, CuPy on a CUDA device, behind one small interface.

Who waits for whom between streams is streams.py's rule; every method here runs in the device's context.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from ..errors import ParameterError
from ..importing import import_optional


def parse_device(device: str, name: str = "device") -> tuple[str, int]:
    """Split "cpu", "cuda" or "cuda:N" into (kind, index); `name` says whose device it is in errors."""
    kind, _, index = device.partition(":")
    if kind == "cpu" and not index:
        return "cpu", 0
    if kind == "cuda" and (not index or index.isdigit()):
        return "cuda", int(index or 0)
    raise ParameterError(f'{name}: device {device!r} is not one of "cpu", "cuda" or "cuda:N"')


def import_cupy() -> ModuleType:
    return import_optional("cupy", extra="gpu", what="the GPU path (CuPy)")


def is_host_array(array: Any) -> bool:
    return isinstance(array, np.ndarray)


def module_of(array: Any) -> ModuleType:
    """numpy for host arrays, cupy for device ones (imported only then)."""
    if is_host_array(array):
        return np
    return import_cupy().get_array_module(array)


def device_of(array: Any) -> Any:
    """A context manager making `array`'s CUDA device current (a no-op for a host array): CuPy
    allocates, and keeps its current stream, per current device (streams.py)."""
    return contextlib.nullcontext() if is_host_array(array) else array.device


def to_host(array: Any) -> np.ndarray:
    """A NumPy copy of a device array; a host array as it is."""
    return array if is_host_array(array) else array.get()


@dataclass
class ArrayDevice:
    """Allocates working arrays on one device and stages uploads to it.

    `xp` is numpy or cupy. On CuPy, host staging arrays are pinned (page-locked), so an upload is
    one DMA transfer, and every array is made on `cuda_device`, the GPU (a `cupy.cuda.Device`).
    """

    xp: ModuleType
    cuda_device: Any = None

    @property
    def is_gpu(self) -> bool:
        return self.xp is not np

    def activate(self) -> Any:
        """A context manager making this device current (a no-op on the host)."""
        return contextlib.nullcontext() if self.cuda_device is None else self.cuda_device

    def empty(self, shape: tuple[int, ...], dtype: Any) -> Any:
        with self.activate():
            return self.xp.empty(shape, dtype=dtype)

    def empty_host(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        if not self.is_gpu:
            return np.empty(shape, dtype=dtype)
        import cupyx

        return cupyx.empty_pinned(shape, dtype=dtype)

    def upload(self, host: np.ndarray, out: Any) -> Any:
        """Copy `host` into the device array `out` (same shape); returns `out`."""
        if self.is_gpu:
            with self.activate():
                out.set(host)
        else:
            out[...] = host
        return out

    def asarray(self, host: np.ndarray) -> Any:
        """A small host array (filter taps, indices) as a device array, on the current stream."""
        with self.activate():
            return self.xp.asarray(host)

    def shared_asarray(self, host: np.ndarray) -> Any:
        """`asarray` for an array other streams will read: the upload is asynchronous, so the host
        waits until it landed (streams.py, rule 2 on the host) before anyone may see it."""
        from .streams import host_wait, record

        with self.activate():
            array = self.xp.asarray(host)
            host_wait(record(self.current_stream()))
            return array

    def new_stream(self) -> Any:
        """A context manager making a fresh non-blocking CUDA stream current (a no-op on the host):
        each buffer works on its own, so batches prepared by several threads overlap."""
        if not self.is_gpu:
            return contextlib.nullcontext()
        with self.activate():
            return self.xp.cuda.Stream(non_blocking=True)

    def current_stream(self) -> Any:
        """This thread's current stream on this device (None on the host): where hand-offs meet."""
        if not self.is_gpu:
            return None
        with self.activate():
            return self.xp.cuda.get_current_stream()

    def synchronize(self) -> None:
        """Wait for the work queued on this thread's current stream of this device."""
        if self.is_gpu:
            with self.activate():
                self.xp.cuda.get_current_stream().synchronize()


def array_device(device: str, name: str = "device") -> ArrayDevice:
    """The ArrayDevice for "cpu" (NumPy) or "cuda[:N]" (CuPy on GPU N)."""
    kind, index = parse_device(device, name)
    if kind == "cpu":
        return ArrayDevice(np)
    cupy = import_cupy()
    return ArrayDevice(cupy, cupy.cuda.Device(index))
