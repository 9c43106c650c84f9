"""The Backend interface: what a model family needs of whatever runs its network."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np


class Backend(Protocol):
    """Runs one input batch, returning the model's raw outputs in order.

    `input_device` is "cpu", or "cuda:N" when the network runs on a GPU and takes its input best
    there (the model then letterboxes on that GPU when CuPy can reach it); `run` takes a host
    (NumPy) or a device (CuPy) batch. `fixed_batch` is the one batch size a static graph runs.
    """

    name: str
    input_dtype: np.dtype
    input_shape: list[int | str]
    fixed_batch: int | None
    metadata: dict[str, str]

    @property
    def input_device(self) -> str: ...

    def run(self, batch: Any) -> list[Any]: ...
