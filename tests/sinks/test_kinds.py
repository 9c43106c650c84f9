"""Sinks and events: which sink takes what (`kinds`), the events' topics, keys and JSON, and events
delivered by the webhook and MQTT sinks."""

from __future__ import annotations

import json

import anyio
import pytest

import streamer
from streamer.frames import RESULTS_SCHEMA
from streamer.sinks import CallbackSink, JsonlSink
from streamer.config.schema import SinkConfigBase
from streamer.sinks.base import Sink, accepts, idempotency_key
from streamer.sinks.mqtt import MqttSink
from streamer.sinks.topics import topics_for
from streamer.sinks.webhook import WebhookSink
from tests.pipeline.helpers import file_source, make_result, pipeline_config
from tests.sinks.receiver import running_receiver

try:
    import aiomqtt
except ImportError:
    aiomqtt = None


def zone_enter(index=0, source="cam", **details):
    result = make_result(index, source=source)
    return result, result.emit("zone_enter", zone="bay", tracker_id=4, class_name="face", counts={"face": 1}, **details)


@pytest.mark.parametrize(
    ("kinds", "takes_frames", "takes_events"),
    [(("frames",), True, False), (("events",), False, True), (("frames", "events"), True, True)],
)
def test_accepts_when_a_sink_names_kinds_takes_only_those(kinds, takes_frames, takes_events):
    sink = CallbackSink(print, kinds=kinds)
    result, event = zone_enter()

    assert (accepts(sink, result), accepts(sink, event)) == (takes_frames, takes_events)


def test_accepts_by_default_takes_frames_only():
    result, event = zone_enter()

    assert accepts(JsonlSink(path="out.jsonl"), result) and not accepts(JsonlSink(path="out.jsonl"), event)


def test_accepts_when_a_user_sink_names_no_kinds_takes_frames_only():
    class Mine(Sink):
        async def write(self, item):
            pass

    result, event = zone_enter()

    assert accepts(Mine(SinkConfigBase()), result) and not accepts(Mine(SinkConfigBase()), event)


async def test_open_when_a_sink_is_not_a_sink_subclass_raises_type_error_naming_the_base():
    class Duck:  # has the methods, not the interface
        async def write(self, item):
            pass

    with pytest.raises(TypeError, match=r"subclass streamer\.sinks\.Sink"):
        async with streamer.open({"sources": [{"type": "lavfi", "graph": "testsrc2"}]}, sinks=[Duck()]):
            pass


def test_accepts_events_only_from_the_sinks_sources():
    sink = CallbackSink(print, sources=["door"], kinds=["events"])

    assert accepts(sink, zone_enter(source="door")[1]) and not accepts(sink, zone_enter(source="yard")[1])


def test_topics_for_an_event_is_source_events_kind():
    _, event = zone_enter(source="cam/1")

    assert topics_for(event) == ["cam_1/events/zone_enter"]


def test_event_to_dict_names_its_kind_frame_and_details():
    result, event = zone_enter(index=3)

    row = event.to_dict()

    assert row == {
        "schema": RESULTS_SCHEMA,
        "event": "zone_enter",
        "source": "cam",
        "frame_index": 3,
        "pts": result.frame.pts,
        "wall_time": result.frame.wall_time,
        "zone": "bay",
        "tracker_id": 4,
        "class_name": "face",
        "counts": {"face": 1},
        "model": result.model.provenance(),
    }
    json.dumps(row)  # JSON-ready as it is


def test_idempotency_key_tells_events_of_one_frame_apart_and_ignores_counts():
    result, enter = zone_enter()
    leave = result.emit("zone_leave", zone="bay", tracker_id=4, class_name="face", counts={}, reason="exited")
    _, same_enter = zone_enter()
    same_enter.details["counts"] = {"face": 9}  # counts describe the zone, not the event

    keys = {idempotency_key(item) for item in (result, enter, leave)}

    assert len(keys) == 3
    assert idempotency_key(same_enter) == idempotency_key(enter)


async def test_webhook_sink_when_it_takes_events_posts_them_with_their_keys(centerface, clip, tmp_path):
    async with running_receiver() as receiver:
        sink = WebhookSink(url=receiver.url, kinds=["events"], batch_size=10, spool_dir=tmp_path / "spool")
        config = pipeline_config(
            file_source(clip, "cam"),
            stages=[{"type": "custom", "function": "tests.pipeline.user_stages:mark_every_frame"}],
        )
        async with streamer.open(config, model=centerface, sinks=[sink], results=False) as stream:
            await stream.wait()
        await receiver.wait_for(30)

    posted = receiver.unique()
    assert [(row["event"], row["frame_index"]) for row in posted] == [("marker", index) for index in range(30)]
    assert all("detections" not in row for row in posted)  # no frame results
    assert len({row["idempotency_key"] for row in posted}) == 30


@pytest.mark.skipif(aiomqtt is None, reason="needs aiomqtt: pip install 'streamer[mqtt]'")
async def test_mqtt_sink_topic_kind_is_detections_for_frames_and_the_kind_for_events(mosquitto):
    result, event = zone_enter()
    client = aiomqtt.Client("127.0.0.1", mosquitto.port)
    async with client:
        await client.subscribe("streamer/cam/+", qos=1)
        async with MqttSink(port=mosquitto.port, topic="streamer/{source}/{kind}", kinds=["frames", "events"]) as sink:
            await sink.write(result)
            await sink.write(event)
        messages = []
        with anyio.fail_after(10):
            async for message in client.messages:
                messages.append(message)
                if len(messages) == 2:
                    break

    topics = {message.topic.value: json.loads(message.payload) for message in messages}
    assert set(topics) == {"streamer/cam/detections", "streamer/cam/zone_enter"}
    assert topics["streamer/cam/zone_enter"]["event"] == "zone_enter"
    assert topics["streamer/cam/zone_enter"]["idempotency_key"] == idempotency_key(event)
    assert "event" not in topics["streamer/cam/detections"]
