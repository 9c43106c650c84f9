"""Webhook sink and its spool: results survive a receiver that is down, failing, or restarted."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import random
import subprocess
import sys
import time
from collections import deque

import numpy as np
import pytest

import streamer
from streamer.frames import Detections, Frame, ModelInfo, Result
from streamer.sinks import CallbackSink
from streamer.sinks.spool import Spool
from streamer.sinks.base import idempotency_key
from streamer.sinks.webhook import WebhookSink
from tests.media import write_clip
from tests.sinks.receiver import running_receiver

MODEL = ModelInfo("m", "centerface", "object-detection", "onnxruntime-cpu", "p", "ab" * 32, ("face",), (32, 32))
FRAMES = 12
FAST = {"backoff_s": 0.01, "backoff_max_s": 0.05, "sync_interval_s": 0.05}


def make_result(index: int, source: str = "cam") -> Result:
    frame = Frame(source, index, index / 30, time.time(), image=np.zeros((4, 4, 3), np.uint8))
    return Result(frame, Detections.empty(), MODEL)


def file_source(path, id):
    return {"type": "file", "id": id, "path": str(path)}


async def until(condition, timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.005)


async def write_all(sink: WebhookSink, results: list[Result]) -> None:
    async with sink:
        for result in results:
            await sink.write(result)


# ---- end to end ------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [1, 8])
async def test_webhook_sink_when_the_receiver_is_down_then_fails_then_recovers_delivers_each_result_once_in_order(
    centerface, tmp_path, batch_size
):
    clip = write_clip(tmp_path / "clip.mp4", frames=FRAMES)
    async with running_receiver() as receiver:
        await receiver.down()
        sink = WebhookSink(url=receiver.url, batch_size=batch_size, batch_ms=5, spool_dir=tmp_path / "spool", **FAST)
        config = {"sources": [file_source(clip, "a"), file_source(clip, "b")]}

        async with streamer.open(config, model=centerface, sinks=[sink], results=False) as stream:
            await until(lambda: sink.written >= 8 and sink.retried >= 3)
            receiver.fail_next(3)
            await receiver.up()
            await stream.wait()

    unique = receiver.unique()
    assert len(unique) == 2 * FRAMES and len({(r["source"], r["frame_index"]) for r in unique}) == 2 * FRAMES
    for source in "ab":
        assert [r["frame_index"] for r in unique if r["source"] == source] == list(range(FRAMES))
    assert receiver.answered[500] == 3
    assert sink.delivered == 2 * FRAMES and sink.pending == 0 and sink.dead_lettered == 0 and sink.dropped == 0
    assert sink.spooled >= 8 and sink.retried >= 6


async def test_webhook_sink_unwritable_spool_dir_fails_at_open_before_any_frame(centerface, clip, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    seen = []
    sinks = [WebhookSink(url="http://127.0.0.1:9/hook", spool_dir=blocker / "spool"), CallbackSink(seen.append)]

    with pytest.raises(streamer.SinkError, match="not-a-folder"):
        async with streamer.open({"sources": [file_source(clip, "a")]}, model=centerface, sinks=sinks) as stream:
            await stream.wait()

    assert seen == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write to any folder")
async def test_webhook_sink_read_only_spool_dir_fails_at_open(tmp_path):
    folder = tmp_path / "read-only"
    folder.mkdir(mode=0o500)

    with pytest.raises(streamer.SinkError, match="read-only"):
        async with WebhookSink(url="http://127.0.0.1:9/hook", spool_dir=folder):
            pass


# ---- delivery rules --------------------------------------------------------------------------


async def test_webhook_sink_restarted_sends_what_the_last_run_left_in_the_spool_with_the_same_keys(tmp_path):
    results = [make_result(i) for i in range(5)]
    async with running_receiver() as receiver:
        await receiver.down()
        first = WebhookSink(url=receiver.url, spool_dir=tmp_path / "spool", drain_s=0.05, **FAST)
        await write_all(first, results)
        assert first.delivered == 0 and first.pending == 5

        await receiver.up()
        second = WebhookSink(url=receiver.url, spool_dir=tmp_path / "spool", **FAST)
        await write_all(second, [])

    assert [r["idempotency_key"] for r in receiver.unique()] == [idempotency_key(r) for r in results]
    assert second.delivered == 5 and second.pending == 0


async def test_webhook_sink_retries_after_timeouts_and_the_receiver_dedupes_late_copies(tmp_path, caplog):
    results = [make_result(i) for i in range(3)]
    async with running_receiver(delay_s=0.2) as receiver:
        sink = WebhookSink(url=receiver.url, timeout_s=0.05, spool_dir=tmp_path / "spool", **FAST)
        async with sink:
            for result in results:
                await sink.write(result)
            await until(lambda: sink.retried >= 2)
            receiver.delay_s = 0.0

    assert [r["frame_index"] for r in receiver.unique()] == [0, 1, 2]
    assert sink.delivered == 3 and "Timeout" in caplog.text


async def test_webhook_sink_closing_during_a_long_backoff_tries_again_at_once(tmp_path):
    async with running_receiver() as receiver:
        await receiver.down()
        sink = WebhookSink(url=receiver.url, backoff_s=30, backoff_max_s=30, drain_s=5, spool_dir=tmp_path / "spool")
        async with sink:
            await sink.write(make_result(0))
            await until(lambda: sink.retried == 1)
            await receiver.up()
            closing = time.monotonic()

    assert sink.delivered == 1 and time.monotonic() - closing < 2


async def test_webhook_sink_refused_batch_goes_to_the_dead_letter_file_with_the_response(tmp_path):
    results = [make_result(i) for i in range(5)]
    dead = tmp_path / "dead.jsonl"
    async with running_receiver() as receiver:
        receiver.refuse(idempotency_key(results[2]), 422, "frame 2 is not welcome")
        sink = WebhookSink(url=receiver.url, spool_dir=tmp_path / "spool", dead_letter_path=dead, **FAST)
        await write_all(sink, results)

    assert [r["frame_index"] for r in receiver.unique()] == [0, 1, 3, 4]
    (line,) = [json.loads(line) for line in dead.read_text().splitlines()]
    assert line["status"] == 422 and line["response"] == "frame 2 is not welcome"
    assert [r["frame_index"] for r in line["results"]] == [2] and line["url"] == receiver.url
    assert (sink.delivered, sink.dead_lettered, sink.retried) == (4, 1, 0)


async def test_webhook_sink_batches_up_to_batch_size_and_sends_the_key_header_only_for_single_results(tmp_path):
    async with running_receiver() as receiver:
        batched = WebhookSink(url=receiver.url, batch_size=5, batch_ms=200, spool_dir=tmp_path / "a", **FAST)
        await write_all(batched, [make_result(i) for i in range(12)])
        single = WebhookSink(url=receiver.url, spool_dir=tmp_path / "b", **FAST)
        await write_all(single, [make_result(i, "solo") for i in range(2)])

    sizes = [len(request.results) for request in receiver.requests]
    assert sum(sizes[:-2]) == 12 and max(sizes[:-2]) == 5 and sizes[-2:] == [1, 1]
    assert all("Idempotency-Key" not in request.headers for request in receiver.requests[:-2])
    for request in receiver.requests[-2:]:
        assert request.headers["Idempotency-Key"] == request.results[0]["idempotency_key"]


async def test_webhook_sink_signs_the_exact_body_with_hmac_sha256(tmp_path, monkeypatch):
    monkeypatch.setenv("HOOK_SECRET", "from-the-environment")
    async with running_receiver() as receiver:
        literal = WebhookSink(url=receiver.url, secret="k3y", batch_size=3, spool_dir=tmp_path / "a", **FAST)
        await write_all(literal, [make_result(i) for i in range(4)])
        from_env = WebhookSink(url=receiver.url, secret_env="HOOK_SECRET", spool_dir=tmp_path / "b", **FAST)
        await write_all(from_env, [make_result(9)])

    keys = [b"k3y"] * (len(receiver.requests) - 1) + [b"from-the-environment"]
    for key, request in zip(keys, receiver.requests, strict=True):
        expected = "sha256=" + hmac.new(key, request.body, hashlib.sha256).hexdigest()
        assert request.headers["X-Streamer-Signature"] == expected


async def test_webhook_sink_sends_headers_from_the_environment_and_never_logs_secrets(
    tmp_path, monkeypatch, caplog, capsys
):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("HOOK_TOKEN", "token-SECRET-1")
    monkeypatch.setenv("HOOK_SECRET", "hmac-SECRET-2")
    results = [make_result(i) for i in range(4)]
    async with running_receiver() as receiver:
        receiver.fail_next(2)
        receiver.refuse(idempotency_key(results[3]), 400, "bad")
        url = receiver.url.replace("127.0.0.1", "user:password-SECRET-3@127.0.0.1") + "?token=query-SECRET-4"
        sink = WebhookSink(
            url=url,
            headers={"X-Api-Key": "literal-SECRET-5"},
            header_env={"X-Hook-Token": "HOOK_TOKEN"},
            secret_env="HOOK_SECRET",
            spool_dir=tmp_path / "spool",
            **FAST,
        )
        await write_all(sink, results)
        await receiver.down()
        down = WebhookSink(url=url, header_env={"X-Hook-Token": "HOOK_TOKEN"}, drain_s=0.1, spool_dir=tmp_path / "b",
                           **FAST)
        await write_all(down, [make_result(9)])

    headers = receiver.requests[0].headers
    assert headers["X-Hook-Token"] == "token-SECRET-1" and headers["X-Api-Key"] == "literal-SECRET-5"
    assert headers["Authorization"].startswith("Basic ")
    assert sink.retried == 2 and sink.dead_lettered == 1 and down.pending == 1
    assert "SECRET" in f"{receiver.requests}"  # sent...
    captured = capsys.readouterr()
    dead_letters = (tmp_path / "spool" / "dead-letter.jsonl").read_text()
    assert "HTTP 500" in caplog.text and "refused" in caplog.text and "http://***@127.0.0.1" in caplog.text
    for text in (caplog.text, captured.out, captured.err, dead_letters, sink.describe(), repr(sink)):
        assert "SECRET" not in text  # ...but never shown


async def test_webhook_sink_missing_environment_variable_fails_at_open_naming_it(tmp_path, monkeypatch):
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    sink = WebhookSink(url="http://127.0.0.1:9/hook", header_env={"X-Token": "NOT_SET_ANYWHERE"}, spool_dir=tmp_path)

    with pytest.raises(streamer.SinkError, match=r"X-Token.*\$NOT_SET_ANYWHERE"):
        async with sink:
            pass


# ---- the spool -------------------------------------------------------------------------------


def test_spool_after_a_restart_replays_what_was_appended_and_not_committed(tmp_path):
    with Spool(tmp_path) as spool:
        for i in range(5):
            spool.append({"i": i})
        assert spool.peek(3) == [{"i": 0}, {"i": 1}, {"i": 2}]
        spool.commit(2)

    with Spool(tmp_path) as spool:
        assert len(spool) == 3 and spool.peek(10) == [{"i": 2}, {"i": 3}, {"i": 4}]
        spool.commit(3)
        spool.append({"i": 5})

    with Spool(tmp_path) as spool:
        assert spool.peek(10) == [{"i": 5}]


def test_spool_after_the_process_dies_without_closing_replays_at_least_what_was_not_committed(tmp_path):
    code = (
        "import os, sys\n"
        "from streamer.sinks.spool import Spool\n"
        "spool = Spool(sys.argv[1])\n"
        "for i in range(6): spool.append({'i': i})\n"
        "spool.peek(2); spool.commit(2); spool.sync()\n"
        "spool.peek(2); spool.commit(2)\n"  # not synced: may be sent again
        "os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, timeout=60)

    with Spool(tmp_path) as spool:
        assert [r["i"] for r in spool.peek(10)] == [2, 3, 4, 5]


def test_spool_after_a_crash_mid_write_cuts_the_torn_record(tmp_path):
    spool = Spool(tmp_path)
    spool.append({"i": 0})
    spool.sync()
    (segment,) = tmp_path.glob("*.seg")
    with open(segment, "ab") as file:
        file.write(b'{"i": 1, "torn')
    spool.close()

    with Spool(tmp_path) as spool:
        spool.append({"i": 2})
        assert spool.peek(10) == [{"i": 0}, {"i": 2}]


def test_spool_when_full_drops_the_oldest_records_counts_them_and_warns_once_per_burst(tmp_path, caplog):
    with Spool(tmp_path, max_bytes=2000) as spool:
        for i in range(300):
            spool.append({"i": i})
        kept = spool.peek(300)
        assert spool.dropped > 0 and len(spool) + spool.dropped == 300 == spool.appended
        assert [r["i"] for r in kept] == list(range(spool.dropped, 300)) and spool.pending_bytes <= 2000
        assert len(caplog.records) == 1 and "full" in caplog.text

        spool.commit(len(kept))
        assert len(caplog.records) == 2 and f"dropped {spool.dropped} records" in caplog.records[1].message
    assert sum(path.stat().st_size for path in tmp_path.glob("*.seg")) <= 2000


def test_spool_commit_after_a_drop_removes_only_what_was_peeked(tmp_path):
    with Spool(tmp_path, max_bytes=200) as spool:
        for i in range(10):
            spool.append({"i": i})
        in_flight = spool.peek(3)
        for i in range(10, 40):
            spool.append({"i": i})  # drops the oldest, including those in flight
        left = len(spool)
        assert spool.dropped > 3 and left + spool.dropped == 40
        spool.commit(len(in_flight))
        assert len(spool) == left and spool.peek(1)[0]["i"] == 40 - left


def test_spool_in_use_or_unwritable_raises_sink_error_naming_the_folder(tmp_path):
    blocker = tmp_path / "plain-file"
    blocker.write_text("")
    with pytest.raises(streamer.SinkError, match="plain-file"):
        Spool(blocker / "spool")
    with Spool(tmp_path / "busy"), pytest.raises(streamer.SinkError, match="busy.*in use"):
        Spool(tmp_path / "busy")


def test_spool_under_random_appends_commits_drops_and_restarts_matches_a_plain_queue(tmp_path):
    rng = random.Random(7)
    expected: deque[dict] = deque()
    spool, dropped, next_i = Spool(tmp_path, max_bytes=600), 0, 0
    for _ in range(400):
        action = rng.random()
        if action < 0.5:
            for _ in range(rng.randint(1, 6)):
                spool.append({"i": next_i, "pad": "x" * rng.randint(0, 30)})
                expected.append({"i": next_i})
                next_i += 1
        elif action < 0.9:
            peeked = spool.peek(rng.randint(1, 8))
            spool.append({"i": next_i, "pad": ""})  # may drop some of what was just peeked
            expected.append({"i": next_i})
            next_i += 1
            for _ in range(spool.dropped - dropped):
                expected.popleft()
            dropped = spool.dropped
            delivered = [r["i"] for r in peeked[: rng.randint(0, len(peeked))]]
            spool.commit(len(delivered))
            while expected and expected[0]["i"] in delivered:
                expected.popleft()
        else:
            spool.close()
            spool = Spool(tmp_path, max_bytes=600)
            dropped = 0
        for _ in range(spool.dropped - dropped):
            expected.popleft()
        dropped = spool.dropped
        assert [r["i"] for r in spool.peek(len(spool) + 1)] == [r["i"] for r in expected]
        assert spool.pending_bytes <= 600
    spool.close()
