"""MQTT sink with `spool_dir`, against a real mosquitto: results the broker never acknowledged survive
a killed worker and a closed sink, and reach subscribers once whoever opens the spool next sends them."""

from __future__ import annotations

import json
import logging
import sys
import textwrap

import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from streamer.errors import ConfigError
from streamer.sinks.base import idempotency_key
from streamer.sinks.mqtt import MqttSink
from streamer.sinks.spool import Spool
from tests.rtsp import free_port
from tests.sinks.test_mqtt import FAST_RETRY, MODEL, collect, collect_keys, key, needs_aiomqtt, result, subscribed

pytestmark = needs_aiomqtt

# A worker with an MQTT sink: says "open", waits for a line, writes N results (which the paused
# broker never acknowledges), says "written" once they are on disk, then waits to be killed.
WORKER = textwrap.dedent("""
    import sys, anyio
    from streamer.sinks.mqtt import MqttSink
    from tests.sinks.test_mqtt import result

    async def main(port, spool_dir, count):
        async with MqttSink(port=port, qos=1, spool_dir=spool_dir) as sink:
            print("open", flush=True)
            await anyio.to_thread.run_sync(sys.stdin.readline)
            for index in range(count):
                await sink.write(result(index))
            await anyio.to_thread.run_sync(sink._spool.sync)
            print("written", flush=True)
            await anyio.sleep(60)

    anyio.run(main, int(sys.argv[1]), sys.argv[2], int(sys.argv[3]))
""")


async def test_mqtt_sink_when_its_worker_is_killed_before_the_acks_the_next_opener_sends_every_result(
    mosquitto, tmp_path, caplog
):
    caplog.set_level(logging.INFO, logger="streamer.sinks.mqtt")
    async with subscribed(mosquitto, identifier="collector"):  # its session queues messages from now on
        pass
    spool_dir = tmp_path / "slot-0"
    command = [sys.executable, "-c", WORKER, str(mosquitto.port), str(spool_dir), "12"]
    async with await anyio.open_process(command, stderr=None) as worker:
        try:
            assert worker.stdout is not None and worker.stdin is not None
            lines = BufferedByteReceiveStream(worker.stdout)
            assert await lines.receive_until(b"\n", 100) == b"open"
            mosquitto.pause()  # the publishes reach its socket; no PUBACK comes back
            await worker.stdin.send(b"go\n")
            assert await lines.receive_until(b"\n", 100) == b"written"
        finally:
            worker.kill()
    mosquitto.kill()  # what reached the broker unread is gone with it
    mosquitto.start()

    async with MqttSink(port=mosquitto.port, qos=1, spool_dir=str(spool_dir), **FAST_RETRY) as heir:
        with anyio.fail_after(10):
            await heir.flush()

    expected = {key("cam", index, MODEL) for index in range(12)}
    assert await collect_keys(mosquitto, expected) == expected
    assert heir.published == 12 and "12 results spooled by an earlier run are sent first" in caplog.text
    assert "took" in caplog.text and f"pid {worker.pid} on " in caplog.text
    with Spool(spool_dir) as spool:
        assert len(spool) == 0  # acknowledged: removed


async def test_mqtt_sink_closed_while_the_broker_is_down_leaves_its_results_to_the_next_opener_same_keys(
    make_mosquitto, tmp_path, caplog
):
    broker = make_mosquitto()  # not started: down
    results = [result(index) for index in range(5)]
    options = {"port": broker.port, "qos": 2, "spool_dir": str(tmp_path / "spool"), **FAST_RETRY}
    async with MqttSink(drain_timeout_s=0.1, **options) as first:
        for item in results:
            await first.write(item)
    assert first.published == 0 and "5 results not acknowledged stay in" in caplog.text

    broker.start()
    async with subscribed(broker) as client:
        async with MqttSink(**options) as second:
            await second.write(result(5))
            with anyio.fail_after(10):
                await second.flush()
        messages = await collect(client, lambda got: len(got) >= 6)

    payloads = [json.loads(message.payload) for message in messages]
    assert [payload["frame_index"] for payload in payloads] == [0, 1, 2, 3, 4, 5]  # the spooled first, in order
    assert [payload["idempotency_key"] for payload in payloads[:5]] == [idempotency_key(item) for item in results]
    with Spool(tmp_path / "spool") as spool:
        assert len(spool) == 0


async def test_mqtt_sink_when_the_spool_is_full_keeps_the_newest_and_removes_only_what_was_acknowledged(
    make_mosquitto, tmp_path
):
    broker = make_mosquitto()
    options = {"port": broker.port, "spool_dir": str(tmp_path / "spool"), **FAST_RETRY}
    async with MqttSink(drain_timeout_s=0.1, spool_max_bytes=3000, **options) as first:
        for index in range(40):
            await first.write(result(index))
    with Spool(tmp_path / "spool") as spool:
        kept = [json.loads(record)[1]["frame_index"] for record in spool.peek_raw(40)]
    assert 0 < len(kept) < 40 and kept == list(range(40 - len(kept), 40))

    broker.start()
    async with subscribed(broker) as client:
        async with MqttSink(**options) as second:
            with anyio.fail_after(10):
                await second.flush()
        messages = await collect(client, lambda got: len(got) >= len(kept))
    assert [json.loads(message.payload)["frame_index"] for message in messages] == kept


def test_mqtt_sink_config_when_spooling_at_qos_0_is_refused():
    with pytest.raises(ConfigError, match="qos to 1 or 2"):
        MqttSink(port=free_port(), qos=0, spool_dir="anywhere")


async def test_mqtt_sink_when_its_full_spool_dropped_some_and_the_broker_then_acknowledges_all_ends_empty(
    mosquitto, tmp_path
):
    options = {"port": mosquitto.port, "spool_dir": str(tmp_path / "spool"), "spool_max_bytes": 3000, **FAST_RETRY}
    async with MqttSink(**options) as sink:
        mosquitto.pause()
        for index in range(40):
            await sink.write(result(index))
        spooled = len(sink._spool)
        mosquitto.resume()
        with anyio.fail_after(10):
            await sink.flush()

    assert 0 < spooled < 40 and sink.published == 40
    with Spool(tmp_path / "spool") as spool:
        assert len(spool) == 0
