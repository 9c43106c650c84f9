"""A spool folder changing hands between processes: a dead owner's folder is taken over and replayed,
a live owner's lock is respected, and an owner whose folder was taken from it is fenced off."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest

import streamer
from streamer.sinks.spool import Spool
from streamer.sinks.webhook import WebhookSink
from tests.sinks.receiver import running_receiver
from tests.sinks.test_webhook import FAST, make_result, write_all

# A spool owner in another process, driven line by line on stdin: "append N", "commit N", "sync",
# "close"; it answers "ok" or "error: <message>" for each.
OWNER = textwrap.dedent("""
    import sys
    from streamer.sinks.spool import Spool
    spool = Spool(sys.argv[1])
    print("ok", flush=True)
    for line in sys.stdin:
        action, count = (line.split() + ["0"])[:2]
        count = int(count)
        try:
            if action == "append":
                for i in range(count): spool.append({"i": spool.appended})
            elif action == "commit":
                spool.peek(count); spool.commit(count)
            elif action == "sync":
                spool.sync()
            elif action == "close":
                spool.close()
            print("ok", flush=True)
        except Exception as exc:
            print(f"error: {exc}", flush=True)
""")


class Owner:
    """A live process holding a spool folder."""

    def __init__(self, folder) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", OWNER, str(folder)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)
        assert self.answer() == "ok"

    def answer(self) -> str:
        assert self.process.stdout is not None
        return self.process.stdout.readline().strip()

    def do(self, command: str) -> str:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self.answer()

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)


@pytest.fixture
def owner(tmp_path):
    """Start an Owner of `tmp_path / "spool"`; each one still alive at the end is killed."""
    started: list[Owner] = []

    def start() -> Owner:
        started.append(Owner(tmp_path / "spool"))
        return started[-1]

    yield start
    for process in started:
        if process.process.poll() is None:
            process.kill()


def test_spool_when_its_owner_was_killed_is_taken_over_and_replays_what_it_left(tmp_path, owner, caplog):
    dead = owner()
    assert dead.do("append 6") == dead.do("commit 2") == dead.do("sync") == "ok"
    dead.kill()

    with Spool(tmp_path / "spool") as spool:
        assert [record["i"] for record in spool.peek(10)] == [2, 3, 4, 5]
        assert spool.taken_from is not None and f"pid {dead.process.pid} on " in spool.taken_from
    assert f"from pid {dead.process.pid} on " in caplog.text


def test_spool_when_closed_cleanly_is_opened_next_without_a_takeover(tmp_path, owner, caplog):
    polite = owner()
    assert polite.do("append 2") == polite.do("close") == "ok"

    with Spool(tmp_path / "spool") as spool:
        assert len(spool) == 2 and spool.taken_from is None
    assert "took" not in caplog.text


def test_spool_when_its_owner_lives_refuses_to_open_and_names_it(tmp_path, owner):
    alive = owner()

    with pytest.raises(streamer.SinkError, match=f"in use by pid {alive.process.pid} on .*spool_takeover"):
        Spool(tmp_path / "spool")

    assert alive.do("append 1") == alive.do("sync") == "ok"  # untouched by the refused attempt


def test_spool_when_taken_over_from_a_live_owner_fences_it_off_for_good(tmp_path, owner, caplog):
    cut_off = owner()
    assert cut_off.do("append 4") == cut_off.do("sync") == "ok"

    with Spool(tmp_path / "spool", takeover=True) as spool:
        fenced = [cut_off.do("sync"), cut_off.do("commit 4"), cut_off.do("append 1")]
        assert [record["i"] for record in spool.peek(10)] == [0, 1, 2, 3]
        spool.commit(1)
        spool.append({"i": 100})
        assert cut_off.do("close") == "ok"  # writes nothing, not even its committed position

    assert all(answer.startswith("error: ") and "was taken over by pid" in answer for answer in fenced)
    with Spool(tmp_path / "spool") as reopened:
        assert [record["i"] for record in reopened.peek(10)] == [1, 2, 3, 100]
    assert "which still holds it" in caplog.text


WEBHOOK_WRITER = textwrap.dedent("""
    import os, signal, sys, anyio
    from tests.sinks.test_webhook import make_result
    from streamer.sinks.webhook import WebhookSink

    async def main():
        sink = WebhookSink(url=sys.argv[1], spool_dir=sys.argv[2], backoff_s=30, backoff_max_s=30)
        async with sink:
            for i in range(int(sys.argv[3])):
                await sink.write(make_result(i))
            await anyio.to_thread.run_sync(sink._spool.sync)
            os.kill(os.getpid(), signal.SIGKILL)  # dies holding its spool, nothing delivered

    anyio.run(main)
""")


async def test_webhook_sink_when_it_takes_a_killed_workers_spool_over_delivers_every_result_it_left(tmp_path):
    async with running_receiver() as receiver:
        await receiver.down()
        dead = subprocess.run([sys.executable, "-c", WEBHOOK_WRITER, receiver.url, str(tmp_path / "slot-0"), "7"], timeout=60)
        await receiver.up()
        heir = WebhookSink(url=receiver.url, spool_dir=tmp_path / "slot-0", **FAST)
        await write_all(heir, [make_result(7)])

    assert dead.returncode == -signal.SIGKILL
    assert sorted(record["frame_index"] for record in receiver.unique()) == list(range(8))
    assert heir.delivered == 8 and heir.pending == 0


async def test_webhook_sink_when_a_live_process_holds_its_spool_opens_it_only_with_spool_takeover(tmp_path, owner):
    alive = owner()
    url = "http://127.0.0.1:9/hook"

    with pytest.raises(streamer.SinkError, match=f"in use by pid {alive.process.pid} on "):
        async with WebhookSink(url=url, spool_dir=tmp_path / "spool"):
            pass
    async with WebhookSink(url=url, spool_dir=tmp_path / "spool", spool_takeover=True, drain_s=0) as heir:
        assert heir.pending == 0
        assert alive.do("sync").startswith("error: ")
