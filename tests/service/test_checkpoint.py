"""Checkpointer: what it saves is already in the files."""

from __future__ import annotations

import json

import anyio

import streamer
from streamer.service.checkpoint import Checkpointer
from tests.media import write_clip


async def test_checkpointer_save_when_lines_wait_in_the_jsonl_buffer_puts_them_in_the_file_first(centerface, tmp_path):
    clip = write_clip(tmp_path / "clip.mp4", frames=90, fps=30)
    out = tmp_path / "out.jsonl"
    config = {
        "sources": [{"type": "file", "id": "job", "path": str(clip), "realtime": True}],
        "sinks": [{"type": "jsonl", "path": str(out)}],
    }
    async with streamer.open(config, model=centerface, results=False) as stream:
        checkpointer = Checkpointer(stream, tmp_path / "job.checkpoint", 3600, None)
        with anyio.fail_after(30):
            while (checkpointer.progress.frontier(stream, "job") or (-1,))[0] < 20:
                await anyio.sleep(0.01)
        checkpointer.save()
        saved = json.loads((tmp_path / "job.checkpoint").read_text())["sources"]["job"]["index"]
        written = out.read_text().splitlines()  # read before the sink's own quarter-second flush

    assert saved >= 20
    assert len(written) >= saved + 1
