"""Imports point down only: each room imports none of the rooms above it (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "streamer"

# A room -> the rooms it must never import, even inside a function.
ABOVE = {
    "engine": {"batcher", "sources", "config", "pipeline", "sinks", "service", "cli"},
    "device": {"engine", "batcher", "sources", "pipeline", "sinks", "service", "cli"},
    "config": {"engine", "device", "batcher", "sources", "pipeline", "sinks", "service", "cli"},
    "sources": {"engine", "batcher", "pipeline", "sinks", "service", "cli"},
    "sinks": {"pipeline", "service", "cluster", "console", "cli"},
    "pipeline": {"service", "cluster", "console", "cli"},
    "service": {"cluster", "console", "cli"},
    "console": {"cluster", "cli"},  # the terminal's display: a daemon's report, drawn
    "cluster": {"console", "cli"},  # the fleet: pipelines and their servers, on Ray
}


def imported_rooms(path: Path) -> set[str]:
    """The top-level streamer modules a file imports (relative imports resolved against its package)."""
    package = path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1]
    rooms = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = list(package[: len(package) - node.level + 1]) if node.level else []
            parts = base + (node.module.split(".") if node.module else [])
            if node.module is None and node.level:
                rooms |= {(base + [alias.name])[1] for alias in node.names if len(base + [alias.name]) > 1}
            elif parts[:1] == ["streamer"] and len(parts) > 1:
                rooms.add(parts[1])
        elif isinstance(node, ast.Import):
            rooms |= {name.name.split(".")[1] for name in node.names if name.name.startswith("streamer.")}
    return rooms


@pytest.mark.parametrize("room", sorted(ABOVE))
def test_room_when_its_files_are_read_imports_nothing_above_it(room):
    found = {
        f"{path.relative_to(PACKAGE.parent)} imports streamer.{other}"
        for path in (PACKAGE / room).rglob("*.py")
        for other in imported_rooms(path) & ABOVE[room]
    }
    assert not found, sorted(found)


def test_imported_rooms_when_a_file_imports_relatively_and_inside_functions_finds_them():
    assert {"sinks", "engine", "config", "sources"} <= imported_rooms(PACKAGE / "pipeline" / "runner.py")
