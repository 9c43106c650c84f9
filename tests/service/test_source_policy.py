"""The admin API holds added sources to `[server.api_sources]`; a real server on loopback, real FFmpeg."""

from __future__ import annotations

import os
from typing import get_args

import pytest

from streamer.config.schema import LavfiGenerator
from streamer.errors import ConfigError
from streamer.service.source_policy import GENERATOR_OPTIONS, check_graph
from tests.media import write_clip
from tests.service.helpers import lavfi, served


async def _post(http, table):
    async with http.post("/sources", json=table) as response:
        return response.status, await response.json()


@pytest.mark.parametrize("table, path", [
    ({"type": "file", "path": "/etc/shadow"}, "$.source.path"),
    ({"type": "file", "path": "concat:/etc/passwd|/etc/shadow"}, "$.source.path"),
    ({"type": "file", "path": "subfile:,start,0,end,0,:/etc/passwd"}, "$.source.path"),
    ({"type": "file", "path": "file:/etc/passwd"}, "$.source.path"),
    ({"type": "lavfi", "graph": "movie=/etc/passwd"}, "$.source.graph"),
    ({"type": "lavfi", "graph": "life=filename=/etc/passwd"}, "$.source.graph"),
    ({"type": "lavfi", "graph": "testsrc2;sendcmd=f=/etc/passwd"}, "$.source.graph"),
    ({"type": "rtsp", "url": "rtsp://127.0.0.1:9/x", "options": {"protocol_whitelist": "file,rtsp,tcp"}},
     "$.source.options.protocol_whitelist"),
    ({"type": "hls", "url": "http://127.0.0.1:9/x.m3u8", "options": {"http_proxy": "http://127.0.0.1:1"}},
     "$.source.options.http_proxy"),
    ({"type": "webcam", "device": "/dev/video0"}, "$.source.device"),
])
async def test_post_source_when_the_table_reads_what_the_policy_forbids_is_403_naming_the_key(centerface, table, path):
    async with served(centerface, lavfi("cam1")) as (stream, server, http):
        status, answer = await _post(http, {"id": "x", **table})
        assert (status, answer["path"]) == (403, path), answer
        assert "[server.api_sources]" in answer["error"] or "config file" in answer["error"]
        assert "x" not in stream.sources.readers


@pytest.mark.parametrize("url, path", [("file:///etc/passwd", "$.source.url"), ("concat:/etc/passwd", "$.source.url")])
async def test_post_source_when_the_url_is_not_a_network_scheme_is_refused(centerface, url, path):
    async with served(centerface, lavfi("cam1")) as (stream, server, http):
        for kind in ("rtsp", "hls"):
            status, answer = await _post(http, {"type": kind, "id": "x", "url": url})
            assert status in (403, 422) and answer["path"] == path, answer


async def test_post_source_when_the_lavfi_graph_would_write_a_file_is_403_and_writes_none(centerface, tmp_path):
    target = tmp_path / "pwned"
    async with served(centerface, lavfi("cam1")) as (stream, server, http):
        status, answer = await _post(http, {"type": "lavfi", "id": "x", "graph": f"testsrc2,metadata=mode=print:file={target}"})
        assert (status, answer["path"]) == (403, "$.source.graph")
        status, answer = await _post(http, {"type": "lavfi", "id": "ok", "graph": "testsrc2=size=320x240:rate=5"})
        assert status == 201, answer
    assert not target.exists()


async def test_post_source_when_the_file_is_under_a_root_starts_it_and_refuses_escapes(centerface, tmp_path):
    root, outside = tmp_path / "videos", tmp_path / "private"
    root.mkdir(), outside.mkdir()
    clip = write_clip(root / "clip.mp4", frames=10)
    secret = write_clip(outside / "secret.mp4", frames=10)
    os.symlink(secret, root / "link.mp4")
    server_table = {"api_sources": {"file_roots": [str(root)]}}
    async with served(centerface, lavfi("cam1"), server=server_table) as (stream, server, http):
        assert (await _post(http, {"type": "file", "id": "ok", "path": str(clip)}))[0] == 201
        for escape in (f"{root}/../private/secret.mp4", str(root / "link.mp4")):
            status, answer = await _post(http, {"type": "file", "id": "bad", "path": escape})
            assert (status, answer["path"]) == (403, "$.source.path") and "private" in answer["error"], answer
        assert stream.sources.configs["ok"].path == str(clip.resolve())


def test_api_sources_when_ffmpeg_options_list_protocol_whitelist_is_a_config_error():
    from streamer.config import load_config

    config = {"sources": [lavfi("a")], "server": {"api_sources": {"ffmpeg_options": ["protocol_whitelist"]}}}
    with pytest.raises(ConfigError, match="protocol_whitelist") as caught:
        load_config(config)
    assert caught.value.path.startswith("$.server.api_sources")


def test_check_graph_when_given_each_allowed_generator_accepts_it_and_ffmpeg_opens_it():
    import av

    assert set(GENERATOR_OPTIONS) == set(get_args(LavfiGenerator))
    for name in GENERATOR_OPTIONS:
        check_graph(f"{name}=rate=5", list(GENERATOR_OPTIONS))
        with av.open(f"{name}=rate=5", format="lavfi") as container:
            assert next(container.decode(video=0)).width > 0
