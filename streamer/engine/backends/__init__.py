"""Backends run a model file on a device; each imports its library only when instantiated.

`base.Backend` is the interface the model families use; `package.open_backend` opens the one a
negotiated package names (ONNX Runtime, PyTorch, TensorRT).

On a GPU every backend keeps streamer/device/streams.py's rule: a device batch given to `run` is
ready on the caller's current CuPy stream, the backend's own stream waits for an event recorded
there before reading it (or the host waits, where the stream is ONNX Runtime's), and `run` hands
its reads and its device outputs back to that current stream before it returns.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ...device.arrays import device_of, module_of, parse_device

__all__ = ["pad_batch", "parse_device", "run_in_fixed_batches"]


def run_in_fixed_batches(
    run_one: Callable[[np.ndarray], list[np.ndarray]], batch: np.ndarray, size: int | None
) -> list[np.ndarray]:
    """Run a model that takes exactly `size` images per call: chunks of `size`, the last one padded."""
    if size is None or len(batch) == size:
        return run_one(batch)
    chunks = [run_one(pad_batch(batch[i : i + size], size)) for i in range(0, len(batch), size)]
    with device_of(chunks[0][0]):
        return [module_of(parts[0]).concatenate(parts)[: len(batch)] for parts in zip(*chunks)]


def pad_batch(chunk: np.ndarray, size: int) -> np.ndarray:
    """The chunk itself when it has `size` items, else a zero-padded copy (on the chunk's device).

    On a GPU the copy is made in the chunk's device context, on the caller's current stream, where
    the chunk is ready (streams.py, rule 3): the padded batch is then ready there too, and the
    backend waits for that stream before it reads it, as for any batch.
    """
    if len(chunk) == size:
        return chunk
    with device_of(chunk):
        padded = module_of(chunk).zeros((size, *chunk.shape[1:]), chunk.dtype)
        padded[: len(chunk)] = chunk
    return padded
