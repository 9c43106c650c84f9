"""JSONL rotation: by size or age, never splitting or losing a line, pruning the oldest files."""

from __future__ import annotations

import json
import re

import anyio

import streamer
from streamer.sinks import JsonlSink
from tests.sinks.test_topics import make_result

ROTATED_NAME = re.compile(r"out\.\d{8}T\d{6}(-\d+)?\.jsonl")


def read_lines(files):
    """Every line of the files in order, checking each file ends with a whole line."""
    lines = []
    for path in files:
        text = path.read_text()
        assert text and text.endswith("\n"), f"{path.name} is empty or ends mid-line"
        lines += [json.loads(line) for line in text.splitlines()]
    return lines


async def write_all(sink, results, pause_after=()):
    async with sink:
        for i, result in enumerate(results):
            await sink.write(result)
            if i in pause_after:
                await anyio.sleep(2 * sink.config.rotate_seconds)


async def test_rotation_by_size_keeps_every_line_whole_and_in_order(centerface, clip, tmp_path):
    out = tmp_path / "out.jsonl"
    sink = JsonlSink(path=str(out), rotate_bytes=1000)

    async with streamer.open(
        {"sources": [{"type": "file", "id": "a", "path": str(clip)}]}, model=centerface, sinks=[sink]
    ) as stream:
        await stream.wait()

    rotated = sink.rotated_files()
    assert len(rotated) >= 3 and len(rotated) == sink.rotated
    assert all(ROTATED_NAME.fullmatch(path.name) for path in rotated)
    assert all(path.stat().st_size <= 1000 for path in [*rotated, out])
    assert [line["frame_index"] for line in read_lines([*rotated, out])] == list(range(30))


async def test_a_line_larger_than_rotate_bytes_gets_a_file_of_its_own(tmp_path):
    out = tmp_path / "out.jsonl"
    sink = JsonlSink(path=str(out), rotate_bytes=10)

    await write_all(sink, [make_result(index=i) for i in range(3)])

    files = [*sink.rotated_files(), out]
    assert [len(path.read_text().splitlines()) for path in files] == [1, 1, 1]
    assert [line["frame_index"] for line in read_lines(files)] == [0, 1, 2]


async def test_rotation_by_time_starts_a_new_file_after_rotate_seconds(tmp_path):
    out = tmp_path / "out.jsonl"
    sink = JsonlSink(path=str(out), rotate_seconds=0.05)

    await write_all(sink, [make_result(index=i) for i in range(6)], pause_after={1, 3})

    files = [*sink.rotated_files(), out]
    assert len(files) >= 3  # same-second names get -1, -2 ... and still sort in order
    assert [line["frame_index"] for line in read_lines(files)] == list(range(6))


async def test_keep_prunes_the_oldest_rotated_files(tmp_path):
    out = tmp_path / "out.jsonl"
    sink = JsonlSink(path=str(out), rotate_bytes=1, keep=2)

    await write_all(sink, [make_result(index=i) for i in range(6)])

    rotated = sink.rotated_files()
    assert sink.rotated == 5 and len(rotated) == 2
    assert [line["frame_index"] for line in read_lines([*rotated, out])] == [3, 4, 5]


async def test_with_rotation_a_previous_runs_file_is_rotated_away_not_truncated(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text('{"frame_index": -1}\n')

    await write_all(JsonlSink(path=str(out), rotate_bytes=10_000), [make_result(index=0)])

    (previous,) = JsonlSink(path=str(out)).rotated_files() or [None]
    assert previous.read_text() == '{"frame_index": -1}\n'
    assert [line["frame_index"] for line in read_lines([out])] == [0]
