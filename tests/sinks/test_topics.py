"""Topic sink: MQTT filter matching, the topic scheme, and subscriptions fed by a real pipeline."""

from __future__ import annotations

import logging

import anyio
import numpy as np
import pytest

import streamer
from streamer.frames import Detections, Frame, ModelInfo, Result
from streamer.sinks.topics import TopicSink, topic_matches, topics_for
from tests.media import write_clip, write_image_clip

MODEL = ModelInfo("m", "arch", "detect", "onnxruntime-cpu", "pkg", "0" * 64, ("face", "person", "a/b"), (32, 32))


def make_result(source: str = "cam", class_ids: tuple[int, ...] = (), index: int = 0) -> Result:
    n = len(class_ids)
    detections = Detections(
        xyxy=np.tile(np.array([[1, 1, 8, 8]], np.float32), (n, 1)),
        confidence=np.full(n, 0.9, np.float32),
        class_id=np.array(class_ids, np.int64),
    )
    frame = Frame(source, index, index / 30, 1.7e9, image=np.zeros((16, 16, 3), np.uint8))
    return Result(frame, detections, MODEL)


@pytest.mark.parametrize(
    "pattern, topic, expected",
    [
        ("a/detections", "a/detections", True),
        ("a/detections", "a/Detections", False),  # case matters
        ("a/detections", "a/detections/", False),
        ("a/detections", "a/detections/face", False),
        ("sport/tennis/player1/#", "sport/tennis/player1", True),  # '#' matches the parent level too
        ("sport/tennis/player1/#", "sport/tennis/player1/ranking", True),
        ("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", True),
        ("sport/#", "sport", True),
        ("sport/#", "sports", False),
        ("a/#", "a/", True),
        ("#", "sport/tennis/player1", True),
        ("#", "/", True),
        ("sport/tennis/+", "sport/tennis/player1", True),
        ("sport/tennis/+", "sport/tennis/player1/ranking", False),
        ("sport/+", "sport", False),
        ("sport/+", "sport/", True),  # '+' matches an empty level
        ("+/+", "/finance", True),
        ("/+", "/finance", True),
        ("+", "/finance", False),
        ("a/+/c", "a//c", True),
        ("+/detections/face", "cam1/detections/face", True),
        ("+/+/#", "cam1", False),
        ("#", "$SYS/broker", False),  # leading wildcards never match $-topics
        ("+/monitor/clients", "$SYS/monitor/clients", False),
        ("$SYS/#", "$SYS/monitor/clients", True),
        ("$SYS/monitor/+", "$SYS/monitor/clients", True),
        ("a/#", "a/$SYS", True),  # only a leading '$' is special
    ],
)
def test_topic_matches_follows_mqtt_filter_rules(pattern, topic, expected):
    assert topic_matches(pattern, topic) is expected


@pytest.mark.parametrize("pattern", ["a/#/b", "#/a", "a/b#", "a+/b", "+a", "a/++", "a/#+", ""])
def test_invalid_filters_are_refused_with_a_clear_message(pattern):
    with pytest.raises(ValueError, match="topic filter"):
        topic_matches(pattern, "a/b")
    with pytest.raises(ValueError, match="topic filter"):
        TopicSink().subscribe(pattern, print)


@pytest.mark.parametrize("topic", ["a/+", "a/#", ""])
def test_topic_names_with_wildcards_are_refused(topic):
    with pytest.raises(ValueError, match="topic"):
        topic_matches("#", topic)


def test_topics_for_names_the_source_and_each_class_once():
    assert topics_for(make_result("cam1")) == ["cam1/detections"]
    assert topics_for(make_result("cam1", (0, 1, 0))) == [
        "cam1/detections",
        "cam1/detections/face",
        "cam1/detections/person",
    ]
    assert topics_for(make_result("$rtsp/x#", (2,))) == ["_rtsp_x_/detections", "_rtsp_x_/detections/a_b"]


async def test_a_subscription_gets_a_result_once_however_many_topics_match():
    sink, seen = TopicSink(), []
    sink.subscribe("#", seen.append)
    sink.subscribe("cam/detections/face", seen.append)

    await sink.write(make_result("cam", (0, 1)))
    await sink.write(make_result("cam", (1,), index=1))

    assert [r.frame_index for r in seen] == [0, 0, 1]


async def test_a_cancelled_subscription_gets_nothing_more():
    sink, seen = TopicSink(), []
    subscription = sink.subscribe("cam/#", lambda r: seen.append(r.frame_index))

    await sink.write(make_result(index=0))
    subscription.cancel()
    subscription.cancel()
    await sink.write(make_result(index=1))

    assert seen == [0] and not subscription.active and sink.subscriptions == ()


async def test_async_callable_objects_are_awaited():
    seen = []

    class Recorder:
        async def __call__(self, result):
            await anyio.sleep(0)
            seen.append(result.frame_index)

    sink = TopicSink()
    sink.subscribe("#", Recorder())
    await sink.write(make_result(index=7))

    assert seen == [7]


def file_source(path, id):
    return {"type": "file", "id": id, "path": str(path)}


@pytest.fixture
def two_sources(tmp_path, astronaut):
    """Source `a` shows a face in each of its 3 frames; source `b` (a gradient) none in its 5."""
    a = write_image_clip(tmp_path / "a.mp4", astronaut, frames=3)
    b = write_clip(tmp_path / "b.mp4", frames=5)
    return [file_source(a, "a"), file_source(b, "b")]


async def run_with(model, sources, sink):
    async with streamer.open({"sources": sources}, model=model, sinks=[sink]) as stream:
        return await stream.wait()


def frames(results):
    return [(r.source_id, r.frame_index) for r in results]


async def test_subscriptions_get_the_results_their_filters_match(centerface, two_sources):
    sink = TopicSink()
    got = {pattern: [] for pattern in ["a/detections", "+/detections", "#", "a/detections/face", "b/detections/+"]}
    for pattern, seen in got.items():
        sink.subscribe(pattern, seen.append)

    await run_with(centerface, two_sources, sink)

    everything = frames(got["#"])
    assert sorted(everything) == [("a", i) for i in range(3)] + [("b", i) for i in range(5)]
    assert frames(got["+/detections"]) == everything
    assert frames(got["a/detections"]) == [("a", 0), ("a", 1), ("a", 2)]
    assert frames(got["a/detections/face"]) == [("a", 0), ("a", 1), ("a", 2)]
    assert all(r.class_names() == ["face"] for r in got["a/detections/face"])
    assert got["b/detections/+"] == []


async def test_a_raising_callback_is_logged_and_isolated(centerface, two_sources, caplog):
    sink, calm = TopicSink(), []

    def explode(result):
        raise RuntimeError(f"boom {result.frame_index}")

    failing = sink.subscribe("a/detections", explode)
    sink.subscribe("#", calm.append)
    with caplog.at_level(logging.ERROR, logger="streamer.sinks.topics"):
        await run_with(centerface, two_sources, sink)

    assert len(calm) == 8
    assert failing.errors == failing.delivered == 3
    assert "'a/detections'" in caplog.text and "explode" in caplog.text and "boom 2" in caplog.text


async def test_sync_and_async_callbacks_each_see_results_in_order(centerface, two_sources):
    sink, in_thread, awaited = TopicSink(), [], []

    def slow_sync(result):
        import time

        time.sleep(0.002 * (result.frame_index % 2))  # uneven work must not reorder anything
        in_thread.append((result.source_id, result.frame_index))

    async def slow_async(result):
        await anyio.sleep(0.002 * ((result.frame_index + 1) % 2))
        awaited.append((result.source_id, result.frame_index))

    sink.subscribe("#", slow_sync)
    sink.subscribe("+/detections", slow_async)
    await run_with(centerface, two_sources, sink)

    assert in_thread == awaited and len(in_thread) == 8
    for source in "ab":
        indexes = [i for s, i in in_thread if s == source]
        assert indexes == sorted(indexes)
