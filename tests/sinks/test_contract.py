"""The Sink contract: one suite every sink passes (trio's `check_one_way_stream` is the model).

Each case builds a sink writing to a real place (a file, an aiohttp receiver, a mosquitto broker,
a callback, a topic subscription) and reads back what reached it. Driven as the pipeline drives it
(its own SinkQueue, `SinkQueue.feed`), every sink must:

    keep each source's order          what arrives for a source is in the order it was written
    honour its overflow policy        "block" loses nothing; "drop_oldest" keeps the newest, counts the rest
    flush on close                    everything written is at its destination once close returns
    hand on at flush()                ... and once `flush()` returns, still open (a video: only at close)
    count a failed write and go on    a SinkWriteError fails that item only; the next one arrives
    close within its deadline         also when its destination is gone

A new sink is done when it has a case here and the suite is green.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import av
import numpy as np
import pytest

from streamer.errors import SinkWriteError
from streamer.frames import Result
from streamer.pipeline.sink_queue import SinkQueue
from streamer.pipeline.summary import SinkReport
from streamer.sinks import CallbackSink, JsonlSink, Sink, VideoSink
from streamer.sinks.mqtt import CLOSE_TIMEOUT_S, MqttSink
from streamer.sinks.snapshot import SnapshotSink
from streamer.sinks.topics import TopicSink
from streamer.sinks.webhook import WebhookSink
from tests.pipeline.helpers import make_result
from tests.rtsp import free_port
from tests.sinks.mosquitto import MISSING_REASON, Mosquitto, mosquitto_binary
from tests.sinks.receiver import Receiver, running_receiver

try:
    import aiomqtt
except ImportError:
    aiomqtt = None

PER_SOURCE = 5
POISON = 2  # the frame index whose write fails in the failed-write test
GONE_DRAIN_S = 0.3
FAST_WEBHOOK = {"backoff_s": 0.01, "backoff_max_s": 0.05, "sync_interval_s": 0.05}
FAST_MQTT = {"backoff_initial_s": 0.05, "backoff_max_s": 0.2, "status_topic": None}
SNAPSHOT_NAME = re.compile(r"(?P<source>.+)_(?P<index>\d+)_\d{8}T\d{6}\.\d{3}\.jpg")
Arrived = list[tuple[str, int]]  # (source, frame index) in the order they reached the destination


@dataclass
class Place:
    """Where a case's sink writes: a folder, and the receiver or broker the case started."""

    folder: Path
    stack: AsyncExitStack
    receiver: Receiver | None = None
    broker: Mosquitto | None = None
    arrived: Arrived = field(default_factory=list)  # what callbacks, subscriptions and subscribers saw

    def note(self, item: Result) -> None:
        self.arrived.append((item.source_id, item.frame_index))


@dataclass(frozen=True)
class Case:
    """One sink: how to build it (`kind` is its class or a subclass of it), read back, and lose its place."""

    name: str
    build: Callable[[Place, type, dict[str, Any]], Sink]
    read: Callable[[Place, int], Awaitable[Arrived]]  # (place, how many to expect at least)
    gone: Callable[[Place], Sink]  # a sink whose destination does not answer
    deadline_s: float  # how long closing may take, gone destination included
    start: Callable[[Place], Awaitable[None]] | None = None  # start its receiver or broker
    sources: tuple[str, ...] = ("a", "b")  # a video records one source
    flush_hands_on: bool = True  # an MP4 is whole only once closed


# ---- the cases ---------------------------------------------------------------------------------


async def read_jsonl(place: Place, expected: int) -> Arrived:
    lines = (place.folder / "out.jsonl").read_text().splitlines()
    return [(line["source"], line["frame_index"]) for line in map(json.loads, lines)]


async def read_video(place: Place, expected: int) -> Arrived:
    """Each frame's index, from its brightness (see `items`)."""
    with av.open(str(place.folder / "out.mp4")) as container:
        levels = [frame.to_ndarray(format="rgb24").mean() for frame in container.decode(video=0)]
    return [("cam", round((level - 20) / 20)) for level in levels]


async def read_snapshots(place: Place, expected: int) -> Arrived:
    """Each JPEG's (source, index) from its name, in the order the files were written."""
    files = sorted((place.folder / "shots").glob("*/*.jpg"), key=lambda path: path.stat().st_mtime_ns)
    return [(match["source"], int(match["index"])) for match in (SNAPSHOT_NAME.fullmatch(f.name) for f in files)]


async def read_receiver(place: Place, expected: int) -> Arrived:
    assert place.receiver is not None
    return [(result["source"], result["frame_index"]) for result in place.receiver.unique()]


async def read_arrived(place: Place, expected: int) -> Arrived:
    """What the callback, subscription or MQTT subscriber saw (the subscriber may trail the broker)."""
    with anyio.move_on_after(5):
        while len(place.arrived) < expected:
            await anyio.sleep(0.005)
    return place.arrived


async def start_receiver(place: Place) -> None:
    place.receiver = await place.stack.enter_async_context(running_receiver())


async def start_broker(place: Place) -> None:
    """A mosquitto broker and a subscriber to `contract/#` noting what arrives."""
    if mosquitto_binary() is None or aiomqtt is None:
        pytest.skip(MISSING_REASON if aiomqtt is not None else "needs aiomqtt: pip install 'streamer[mqtt]'")
    place.broker = Mosquitto(place.folder / "broker").start()
    place.stack.callback(place.broker.stop)
    client = await place.stack.enter_async_context(aiomqtt.Client("127.0.0.1", place.broker.port))
    await client.subscribe("contract/#", qos=1)
    group = await place.stack.enter_async_context(anyio.create_task_group())
    place.stack.callback(group.cancel_scope.cancel)

    async def subscribe() -> None:
        async for message in client.messages:
            payload = json.loads(message.payload)
            place.arrived.append((payload["source"], payload["frame_index"]))

    group.start_soon(subscribe)


def subscribed_topics(place: Place, kind: type, options: dict[str, Any]) -> Sink:
    sink = kind(**options)
    sink.subscribe("#", place.note)
    return sink


def webhook_to(place: Place, kind: type, options: dict[str, Any], url: str, spool: str) -> Sink:
    return kind(url=url, spool_dir=place.folder / spool, **FAST_WEBHOOK, **options)


CASES = [
    Case(
        "jsonl",
        build=lambda place, kind, options: kind(path=str(place.folder / "out.jsonl"), **options),
        read=read_jsonl,
        gone=lambda place: JsonlSink(path=str(place.folder / "gone.jsonl")),
        deadline_s=2.0,
    ),
    Case(
        "video",
        build=lambda place, kind, options: kind(path=str(place.folder / "out.mp4"), annotate=False, **options),
        read=read_video,
        gone=lambda place: VideoSink(path=str(place.folder / "gone.mp4")),
        deadline_s=2.0,
        sources=("cam",),
        flush_hands_on=False,
    ),
    Case(
        "snapshot",
        build=lambda place, kind, options: kind(folder=str(place.folder / "shots"), annotate=False, **options),
        read=read_snapshots,
        gone=lambda place: SnapshotSink(folder=str(place.folder / "gone")),
        deadline_s=2.0,
    ),
    Case(
        "webhook",
        build=lambda place, kind, options: webhook_to(place, kind, options, place.receiver.url, "spool"),
        read=read_receiver,
        gone=lambda place: webhook_to(
            place, WebhookSink, {"drain_s": GONE_DRAIN_S}, f"http://127.0.0.1:{free_port()}/hook", "gone"
        ),
        deadline_s=GONE_DRAIN_S + 1.5,
        start=start_receiver,
    ),
    Case(
        "mqtt",
        build=lambda place, kind, options: kind(
            port=place.broker.port, topic="contract/{source}", **FAST_MQTT, **options
        ),
        read=read_arrived,
        gone=lambda place: MqttSink(port=free_port(), drain_timeout_s=GONE_DRAIN_S, **FAST_MQTT),
        deadline_s=GONE_DRAIN_S + CLOSE_TIMEOUT_S + 1.0,
        start=start_broker,
    ),
    Case(
        "callback",
        build=lambda place, kind, options: kind(place.note, **options),
        read=read_arrived,
        gone=lambda place: CallbackSink(print),
        deadline_s=2.0,
    ),
    Case(
        "topics",
        build=subscribed_topics,
        read=read_arrived,
        gone=lambda place: TopicSink(),
        deadline_s=2.0,
    ),
]
KINDS = {
    "jsonl": JsonlSink, "video": VideoSink, "snapshot": SnapshotSink, "webhook": WebhookSink,
    "mqtt": MqttSink, "callback": CallbackSink, "topics": TopicSink,
}  # fmt: skip


@pytest.fixture(params=CASES, ids=[case.name for case in CASES])
def case(request: pytest.FixtureRequest) -> Case:
    return request.param


@asynccontextmanager
async def opened(case: Case, folder: Path) -> AsyncIterator[Place]:
    """The case's place, its receiver or broker running for the block (in the test's own task)."""
    async with AsyncExitStack() as stack:
        place = Place(folder, stack)
        if case.start is not None:
            await case.start(place)
        yield place


def items(case: Case) -> list[Result]:
    """PER_SOURCE frames of each of the case's sources, interleaved; each with a confident box (for the
    snapshot sink), its picture as bright as 20 + 20 * its index (so a video shows which frame it is)."""
    made = []
    for index in range(PER_SOURCE):
        for source in case.sources:
            result = make_result(index, [(2, 2, 12, 12)], source=source, size=(32, 32))
            result.frame.image = np.full((32, 32, 3), 20 + 20 * index, np.uint8)
            made.append(result)
    return made


def keys(written: list[Result]) -> Arrived:
    return [(item.source_id, item.frame_index) for item in written]


def per_source(arrived: Arrived) -> dict[str, list[int]]:
    by_source: dict[str, list[int]] = {}
    for source, index in arrived:
        by_source.setdefault(source, []).append(index)
    return by_source


def failing(kind: type) -> type:
    """`kind`, except that writing frame POISON of any source fails with SinkWriteError."""

    class Failing(kind):  # type: ignore[misc, valid-type]
        async def write(self, item: Result) -> None:
            if item.frame_index == POISON:
                raise SinkWriteError(f"cannot write frame {POISON}")
            await super().write(item)

    return Failing


async def deliver(sink: Sink, written: list[Result], *, fill_first: bool = False) -> SinkReport:
    """Drive `sink` as the pipeline does, through its own SinkQueue: fed while the items are put, or
    with `fill_first` only after all of them were (so a full queue's overflow policy decides)."""
    report = SinkReport(sink.describe())
    queue = SinkQueue(sink.queue_size, sink.overflow, report)
    async with sink, anyio.create_task_group() as group:
        if not fill_first:
            group.start_soon(queue.feed, sink)
        for item in written:
            await queue.put(item)
        queue.close()
        if fill_first:
            group.start_soon(queue.feed, sink)
    return report


# ---- the contract ------------------------------------------------------------------------------


async def test_sink_when_sources_interleave_delivers_each_sources_items_in_order(case, tmp_path):
    async with opened(case, tmp_path) as place:
        written = items(case)

        report = await deliver(case.build(place, KINDS[case.name], {}), written)

        arrived = await case.read(place, len(written))
        assert per_source(arrived) == per_source(keys(written))
        assert (report.written, report.failed, report.dropped) == (len(written), 0, 0)


async def test_sink_when_its_queue_is_full_and_overflow_is_block_loses_nothing(case, tmp_path):
    async with opened(case, tmp_path) as place:
        written = items(case)
        sink = case.build(place, KINDS[case.name], {"queue_size": 1, "overflow": "block"})

        report = await deliver(sink, written)

        arrived = await case.read(place, len(written))
        assert sorted(arrived) == sorted(keys(written))
        assert report.dropped == 0 and report.written == len(written)


async def test_sink_when_its_queue_is_full_and_overflow_is_drop_oldest_keeps_the_newest_and_counts_the_rest(
    case, tmp_path
):
    async with opened(case, tmp_path) as place:
        written = items(case)
        sink = case.build(place, KINDS[case.name], {"queue_size": 3, "overflow": "drop_oldest"})

        report = await deliver(sink, written, fill_first=True)

        assert sorted(await case.read(place, 3)) == sorted(keys(written[-3:]))
        assert (report.written, report.dropped) == (3, len(written) - 3)


@pytest.mark.parametrize("until", ["closed", "flushed"])
async def test_sink_when_closed_or_flushed_holds_everything_written_at_its_destination(case, until, tmp_path):
    if until == "flushed" and not case.flush_hands_on:
        pytest.skip("an MP4 is whole only once closed: a video sink's flush() hands nothing on")
    async with opened(case, tmp_path) as place:
        written = items(case)
        sink = case.build(place, KINDS[case.name], {})

        async with sink:
            for item in written:
                await sink.write(item)
            if until == "flushed":
                with anyio.fail_after(5):
                    await sink.flush()
                arrived = await case.read(place, len(written))  # still open
        if until == "closed":
            arrived = await case.read(place, len(written))

        assert per_source(arrived) == per_source(keys(written))


async def test_sink_when_one_write_fails_with_sink_write_error_counts_it_and_takes_the_next(case, tmp_path):
    async with opened(case, tmp_path) as place:
        written = items(case)

        report = await deliver(case.build(place, failing(KINDS[case.name]), {}), written)

        kept = keys([item for item in written if item.frame_index != POISON])
        assert per_source(await case.read(place, len(kept))) == per_source(kept)
        assert (report.written, report.failed) == (len(kept), len(case.sources))
        assert report.last_error == f"cannot write frame {POISON}"


async def test_sink_when_its_destination_is_gone_closes_within_its_deadline(case, tmp_path):
    if case.name == "mqtt" and aiomqtt is None:
        pytest.skip("needs aiomqtt: pip install 'streamer[mqtt]'")
    sink = case.gone(Place(tmp_path, AsyncExitStack()))  # nothing started: nobody answers

    with anyio.fail_after(case.deadline_s + 10):  # a hang fails here, not in the CI job's timeout
        async with sink:
            for item in items(case)[:3]:
                await sink.write(item)
            closing = time.monotonic()
    assert time.monotonic() - closing < case.deadline_s
