"""Helpers for sinks that write files."""

from __future__ import annotations

from pathlib import Path

from ..errors import SinkError


def prepare_output(path: str | Path, what: str) -> Path:
    """Create the parent folder and check it is writable now, not after an hour of video."""
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "ab"):
            pass
    except OSError as exc:
        raise SinkError(f"{what}: cannot write {str(target)!r}: {exc.strerror}; choose a writable path") from exc
    return target
