"""Small rewrites of ONNX graphs, done at load time with the `onnx` package and kept in the cache.

    <cache root>/rewritten/<key>.onnx    the rewritten graph; `key` digests the input and the rewrite

Importing `onnx` takes a second or more, and its ml_dtypes extension holds the GIL for all of it
(a worker thread does not keep the event loop running), so a graph is rewritten once per cache,
in a child process unless `onnx` is imported already, and later loads read the result.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

from ..errors import ModelFormatError
from .cache import atomic_write, default_cache_root

log = logging.getLogger("streamer.engine")

REWRITE_REVISION = 1  # bump when a change here makes earlier rewrites wrong
CHILD_TIMEOUT_S = 120.0


def with_dynamic_shapes(
    model_bytes: bytes, names: dict[str, list[str | int]], cache_root: str | Path | None = None
) -> bytes:
    """Give the named graph inputs/outputs symbolic dimensions (e.g. a dynamic batch); the result
    is read from the cache when an earlier load made it (runs in a worker thread).

    Weights that old exporters also listed as graph inputs are dropped from the inputs, so ONNX
    Runtime may fold them as constants.
    """
    kept = rewritten_path(model_bytes, names, cache_root)
    if kept.is_file():
        return kept.read_bytes()
    rewrite = _with_dynamic_shapes if "onnx" in sys.modules else _rewrite_in_child
    rewritten = rewrite(model_bytes, names)
    try:
        atomic_write(kept, rewritten)
    except OSError as exc:  # a read-only cache only costs the next load the rewrite again
        log.debug("cannot keep the rewritten graph in %s: %s", kept, exc)
    return rewritten


def rewritten_path(model_bytes: bytes, names: dict[str, list[str | int]], cache_root: str | Path | None) -> Path:
    """Where the cache keeps this rewrite of this graph."""
    digest = hashlib.sha256(model_bytes)
    digest.update(json.dumps([names, REWRITE_REVISION], sort_keys=True).encode())
    root = Path(cache_root).expanduser() if cache_root is not None else default_cache_root()
    return root / "rewritten" / f"{digest.hexdigest()[:32]}.onnx"


def _rewrite_in_child(model_bytes: bytes, names: dict[str, list[str | int]]) -> bytes:
    """`_with_dynamic_shapes` in `python -m streamer.engine.onnx_graph`: graph in on stdin, out on stdout."""
    command = [sys.executable, "-m", __name__, json.dumps(names)]
    try:
        done = subprocess.run(command, input=model_bytes, capture_output=True, timeout=CHILD_TIMEOUT_S, check=True)
    except subprocess.CalledProcessError as exc:
        detail = exc.stderr.decode(errors="replace").strip().splitlines()[-1:] or [f"exit {exc.returncode}"]
        raise ModelFormatError(f"cannot rewrite the ONNX graph's shapes: {detail[0]}") from exc
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ModelFormatError(f"cannot rewrite the ONNX graph's shapes: {exc}") from exc
    return done.stdout


def _with_dynamic_shapes(model_bytes: bytes, names: dict[str, list[str | int]]) -> bytes:
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


if __name__ == "__main__":  # the child of _rewrite_in_child
    sys.stdout.buffer.write(_with_dynamic_shapes(sys.stdin.buffer.read(), json.loads(sys.argv[1])))
