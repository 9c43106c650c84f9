"""MQTT sink against a real mosquitto broker: restarts lose no QoS 1 result, topics, status, login, backlog."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import numpy as np
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

import streamer
from streamer.errors import ConfigError, MissingDependencyError, SinkError
from streamer.frames import Detections, Frame, ModelInfo, Result
from streamer.sinks import CallbackSink
from streamer.sinks.base import idempotency_key
from streamer.sinks.mqtt import MqttSink
from tests.media import write_clip
from tests.rtsp import free_port
from tests.sinks.mosquitto import Mosquitto

try:
    import aiomqtt
except ImportError:  # the sink itself is tested to say so; the broker tests need it
    aiomqtt = None

needs_aiomqtt = pytest.mark.skipif(aiomqtt is None, reason="needs aiomqtt: pip install 'streamer[mqtt]'")

MODEL = ModelInfo("org/faces", "centerface", "detection", "onnxruntime-cpu", "test-1", "ab" * 32, ("face",), (32, 32))
PASSWORD = "s3cret-Pa55word"
FAST_RETRY = {"backoff_initial_s": 0.05, "backoff_max_s": 0.2}


def result(index: int = 0, source: str = "cam", model: ModelInfo = MODEL) -> Result:
    frame = Frame(source, index, index / 30, time.time(), image=np.zeros((4, 6, 3), np.uint8))
    return Result(frame, Detections.empty(), model)


def key(source: str, index: int, model: Any) -> tuple[str, int, str]:
    """What identifies a delivered result in these tests (its idempotency key also hashes capture time)."""
    return source, index, model.sha256


@asynccontextmanager
async def subscribed(
    broker: Mosquitto, topic: str = "streamer/+/detections", *, identifier: str | None = None, **login: str
) -> AsyncIterator[Any]:
    """A client subscribed at QoS 2; with an identifier, a persistent session that queues while away."""
    persistent = identifier is not None
    client = aiomqtt.Client("127.0.0.1", broker.port, identifier=identifier, clean_session=not persistent, **login)
    async with client:
        await client.subscribe(topic, qos=2)
        yield client


async def collect(client: Any, done: Callable[[list[Any]], bool], timeout_s: float = 10.0) -> list[Any]:
    """Messages until `done(messages)` or the timeout (the caller's asserts then show what is missing)."""
    messages: list[Any] = []
    with anyio.move_on_after(timeout_s):
        async for message in client.messages:
            messages.append(message)
            if done(messages):
                break
    return messages


def keys_of(messages: list[Any]) -> set[tuple[str, int, str]]:
    payloads = [json.loads(message.payload) for message in messages]
    return {(payload["source"], payload["frame_index"], payload["model"]["sha256"]) for payload in payloads}


async def collect_keys(broker: Mosquitto, expected: set[tuple[str, int, str]]) -> set[tuple[str, int, str]]:
    """Every key the persistent subscriber 'collector' was sent while it was away (and since)."""
    async with subscribed(broker, identifier="collector") as client:
        return keys_of(await collect(client, lambda messages: keys_of(messages) >= expected))


def file_source(clip: Any, id: str) -> dict[str, str]:
    return {"type": "file", "id": id, "path": str(clip)}


async def run_stream(model: Any, sources: list[dict[str, str]], sinks: list[Any]) -> None:
    async with streamer.open({"sources": sources}, model=model, sinks=sinks) as stream:
        await stream.wait()


@needs_aiomqtt
async def test_broker_restarted_mid_run_loses_no_qos1_result(centerface, clip, mosquitto):
    async with subscribed(mosquitto, identifier="collector"):  # its session queues messages from now on
        pass
    sink = MqttSink(port=mosquitto.port, qos=1, **FAST_RETRY)

    def restart_broker_midway(result: Result) -> None:
        if result.frame_index == 10:
            mosquitto.stop()
        elif result.frame_index == 20:
            mosquitto.start()

    await run_stream(centerface, [file_source(clip, "cam")], [sink, CallbackSink(restart_broker_midway, queue_size=1)])

    expected = {key("cam", index, centerface.info) for index in range(30)}
    assert await collect_keys(mosquitto, expected) == expected  # duplicates collapse into the set
    assert sink.reconnects >= 1 and sink.published >= 30 and sink.dropped == 0 and sink.pending == 0


@needs_aiomqtt
async def test_results_sent_but_never_acknowledged_before_a_broker_crash_are_sent_again(mosquitto, caplog):
    caplog.set_level(logging.DEBUG, logger="streamer.sinks.mqtt.client")
    async with subscribed(mosquitto, identifier="collector"):
        pass

    async with MqttSink(port=mosquitto.port, **FAST_RETRY) as sink:
        mosquitto.pause()  # the publishes reach its socket; no PUBACK comes back
        for index in range(5):
            await sink.write(result(index))
        with anyio.fail_after(5):
            while sum("Sending PUBLISH" in r.message and "detections" in r.message for r in caplog.records) < 5:
                await anyio.sleep(0.01)
        assert (sink.published, sink.pending) == (0, 5)
        mosquitto.kill()
        mosquitto.start()
        with anyio.fail_after(10):
            await sink.flush()

    expected = {key("cam", index, MODEL) for index in range(5)}
    assert await collect_keys(mosquitto, expected) == expected
    assert sink.reconnects == 1 and sink.published == 5


@needs_aiomqtt
async def test_topic_template_resolves_per_source_and_model(centerface, tmp_path, mosquitto):
    sources = [file_source(write_clip(tmp_path / f"{id}.mp4", frames=3), id) for id in ("a", "b")]
    by_source = MqttSink(port=mosquitto.port, topic="streamer/{source}/detections")
    by_model = MqttSink(port=mosquitto.port, topic="models/{model}/{source}", qos=2, sources=["b"])

    async with subscribed(mosquitto, "#") as client:
        await run_stream(centerface, sources, [by_source, by_model])
        messages = await collect(client, lambda got: sum(m.topic.value != "streamer/status" for m in got) >= 9)

    pairs = [(m.topic.value, json.loads(m.payload)["source"]) for m in messages if m.topic.value != "streamer/status"]
    expected = [("models/centerface/b", "b"), ("streamer/a/detections", "a"), ("streamer/b/detections", "b")]
    assert sorted(pairs) == sorted(expected * 3)


@needs_aiomqtt
@pytest.mark.parametrize("qos", [0, 1, 2])
async def test_each_qos_delivers_the_result_json_with_its_idempotency_key(mosquitto, qos):
    sent = result(index=7)
    async with subscribed(mosquitto, "org_faces/+") as client:
        async with MqttSink(port=mosquitto.port, topic="{model}/{source}", qos=qos) as sink:
            await sink.write(sent)
        (message,) = await collect(client, lambda got: len(got) >= 1)

    payload = json.loads(message.payload)
    assert message.topic.value == "org_faces/cam" and message.qos == qos and sink.published == 1
    assert payload["idempotency_key"] == idempotency_key(sent)
    assert payload["frame_index"] == 7 and payload["detections"] == [] and payload["model"]["id"] == "org/faces"


@needs_aiomqtt
async def test_status_topic_is_online_while_open_and_offline_after_close_and_results_retain(mosquitto):
    async with MqttSink(port=mosquitto.port, retain=True) as sink:
        for index in range(3):
            await sink.write(result(index))
        await sink.flush()
        async with subscribed(mosquitto, "streamer/#") as late:
            retained = {m.topic.value: m for m in await collect(late, lambda got: len(got) >= 2)}

    assert retained["streamer/status"].payload == b"online" and retained["streamer/status"].retain
    latest = retained["streamer/cam/detections"]
    assert latest.retain and json.loads(latest.payload)["frame_index"] == 2
    async with subscribed(mosquitto, "streamer/status") as after:
        (status,) = await collect(after, lambda got: len(got) >= 1)
    assert status.payload == b"offline" and status.retain


@needs_aiomqtt
async def test_a_killed_daemon_is_reported_offline_by_its_last_will(mosquitto):
    code = (
        "import asyncio\nfrom streamer.sinks.mqtt import MqttSink\n"
        "async def main():\n"
        f"    async with MqttSink(port={mosquitto.port}, status_topic='daemon/status'):\n"
        "        print('open', flush=True)\n"
        "        await asyncio.sleep(60)\n"
        "asyncio.run(main())\n"
    )
    async with await anyio.open_process([sys.executable, "-c", code], stderr=None) as daemon:
        try:
            assert daemon.stdout is not None
            assert await BufferedByteReceiveStream(daemon.stdout).receive_until(b"\n", 100) == b"open"
            async with subscribed(mosquitto, "daemon/status") as client:
                (online,) = await collect(client, lambda got: len(got) >= 1)
                daemon.kill()  # SIGKILL: no DISCONNECT is sent, so the broker publishes the will
                (offline,) = await collect(client, lambda got: len(got) >= 1)
        finally:
            if daemon.returncode is None:
                daemon.kill()

    assert (online.payload, online.retain) == (b"online", True)
    assert offline.payload == b"offline"


@needs_aiomqtt
async def test_password_login_works_and_the_password_never_shows(make_mosquitto, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    broker = make_mosquitto(users={"streamer": PASSWORD}).start()
    monkeypatch.setenv("STREAMER_MQTT_PASSWORD", PASSWORD)
    from_env = MqttSink(port=broker.port, username="streamer", password_env="STREAMER_MQTT_PASSWORD")
    direct = MqttSink(port=broker.port, username="streamer", password=PASSWORD)
    wrong = MqttSink(port=broker.port, username="streamer", password=PASSWORD + "-wrong")

    async with subscribed(broker, username="streamer", password=PASSWORD) as client:
        for sink in (from_env, direct):
            async with sink:
                await sink.write(result(index=int(sink is direct)))
        received = await collect(client, lambda got: len(got) >= 2)
    with pytest.raises(SinkError, match="refused the login") as refused:
        async with wrong:
            pass

    assert keys_of(received) == {key("cam", 0, MODEL), key("cam", 1, MODEL)}
    shown = [caplog.text, str(refused.value)]
    shown += [repr(sink) + sink.describe() + repr(vars(sink)) for sink in (from_env, direct, wrong)]
    assert not [text for text in shown if PASSWORD in text]
    assert "password='***'" in repr(direct) and "Sending CONNECT" in caplog.text  # the client's DEBUG log was captured


@needs_aiomqtt
async def test_password_env_that_is_not_set_fails_on_open_naming_the_variable(monkeypatch):
    monkeypatch.delenv("NO_SUCH_MQTT_PASSWORD", raising=False)

    with pytest.raises(SinkError, match="NO_SUCH_MQTT_PASSWORD"):
        async with MqttSink(password_env="NO_SUCH_MQTT_PASSWORD"):
            pass


@needs_aiomqtt
async def test_broker_down_at_start_the_sink_keeps_retrying_and_delivers_once_it_appears(
    centerface, clip, make_mosquitto
):
    broker = make_mosquitto().start()
    async with subscribed(broker, identifier="collector"):
        pass
    broker.stop()
    sink = MqttSink(port=broker.port, **FAST_RETRY)

    def start_broker_midway(result: Result) -> None:
        if result.frame_index == 15:
            broker.start()

    await run_stream(centerface, [file_source(clip, "cam")], [sink, CallbackSink(start_broker_midway, queue_size=1)])

    expected = {key("cam", index, centerface.info) for index in range(30)}
    assert await collect_keys(broker, expected) == expected
    assert sink.published == 30 and sink.reconnects == 0 and sink.dropped == 0


@needs_aiomqtt
async def test_while_the_broker_is_down_a_full_buffer_drops_the_oldest_and_counts(make_mosquitto, caplog):
    broker = make_mosquitto().start()
    async with subscribed(broker, identifier="collector"):
        pass
    broker.stop()

    async with MqttSink(port=broker.port, max_in_flight=5, **FAST_RETRY) as sink:
        for index in range(12):
            await sink.write(result(index))
        assert (sink.dropped, sink.pending, sink.published) == (7, 5, 0)
        broker.start()
        with anyio.fail_after(10):
            await sink.flush()

    newest = {key("cam", index, MODEL) for index in range(7, 12)}
    assert await collect_keys(broker, newest) == newest
    assert sink.published == 5
    assert sum("dropping the oldest" in record.message for record in caplog.records) == 1  # once per burst
    assert any("dropped 7 results the broker could not take" in record.message for record in caplog.records)


@needs_aiomqtt
async def test_closing_while_the_broker_stays_down_gives_up_after_the_drain_timeout(caplog):
    sink = MqttSink(port=free_port(), drain_timeout_s=0.2, **FAST_RETRY)
    async with sink:
        for index in range(3):
            await sink.write(result(index))
        closing = time.monotonic()
    assert time.monotonic() - closing < 2.0
    assert sink.published == 0 and sink.pending == 3
    assert "3 results not delivered" in caplog.text


async def test_without_aiomqtt_opening_names_the_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "aiomqtt", None)  # `import aiomqtt` now raises ImportError

    with pytest.raises(MissingDependencyError, match=r"pip install 'streamer\[mqtt\]'"):
        async with MqttSink():
            pass


@pytest.mark.parametrize(
    "topic, problem",
    [("streamer/{camera}/x", "unknown placeholder {camera}"), ("streamer/+/x", "wildcards"), ("a/{source", "expected")],
)
def test_a_bad_topic_template_is_a_config_error(topic, problem):
    with pytest.raises(ConfigError, match=problem):
        MqttSink(topic=topic)
