"""Importing streamer stays cheap: no heavy library is imported until it is needed."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ["onnxruntime", "onnx", "av", "torch", "tensorrt", "cupy", "supervision", "aiohttp"]


def test_import_streamer_imports_no_heavy_library():
    code = f"import sys, streamer; print([m for m in {HEAVY!r} if m in sys.modules])"

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert done.stdout.strip() == "[]"
