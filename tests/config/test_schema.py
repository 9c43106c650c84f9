"""The tables for tracking, zones, presence, anonymisation and event routing: they load, they have
sensible defaults, and every mistake is an error that names its key path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

from streamer.config.loader import load_config
from streamer.config.schema import (
    AnonymizeStageConfig,
    CallbackSinkConfig,
    Config,
    FileSourceConfig,
    JsonlSinkConfig,
    LineConfig,
    MqttSinkConfig,
    PresenceStageConfig,
    TrackStageConfig,
    VideoSinkConfig,
    WebhookSinkConfig,
    ZoneConfig,
    ZonesStageConfig,
)
from streamer.errors import ConfigError

TOML = """
[[sources]]
id = "door"
type = "file"
path = "door.mp4"

[[sources]]
id = "yard"
type = "file"
path = "yard.mp4"

[[stages]]
type = "anonymize"
method = "pixelate"
padding = 0.2
strength = 0.5

[[stages]]
type = "track"
lost_frames = 15
min_frames = 2

[[stages]]
type = "zones"
relative = true
sources = ["door"]
forget_after_frames = 10

[[stages.zones]]
name = "bay"
polygon = [[0.25, 0.0], [0.75, 0.0], [0.75, 1.0], [0.25, 1.0]]
classes = ["face"]
anchor = "center"

[[stages.lines]]
name = "threshold"
start = [0.5, 0.0]
end = [0.5, 1.0]
min_crossing_frames = 2

[[stages]]
type = "presence"
classes = ["face"]
appear_frames = 2
disappear_frames = 5

[[sinks]]
type = "jsonl"
path = "out/events.jsonl"
kinds = ["events"]

[[sinks]]
type = "jsonl"
path = "out/everything.jsonl"
kinds = ["frames", "events"]

[[sinks]]
type = "callback"
function = "hooks:on_event"
kinds = ["events"]

[[sinks]]
type = "video"
path = "out/door.mp4"
sources = ["door"]
annotate = false
"""

EXPECTED = Config(
    sources=[FileSourceConfig(id="door", path="door.mp4"), FileSourceConfig(id="yard", path="yard.mp4")],
    stages=[
        AnonymizeStageConfig(method="pixelate", padding=0.2, strength=0.5),
        TrackStageConfig(lost_frames=15, min_frames=2),
        ZonesStageConfig(
            zones=[
                ZoneConfig(
                    name="bay",
                    polygon=[(0.25, 0.0), (0.75, 0.0), (0.75, 1.0), (0.25, 1.0)],
                    classes=["face"],
                    anchor="center",
                )
            ],
            lines=[LineConfig(name="threshold", start=(0.5, 0.0), end=(0.5, 1.0), min_crossing_frames=2)],
            relative=True,
            sources=["door"],
            forget_after_frames=10,
        ),
        PresenceStageConfig(classes=["face"], appear_frames=2, disappear_frames=5),
    ],
    sinks=[
        JsonlSinkConfig(path="out/events.jsonl", kinds=["events"]),
        JsonlSinkConfig(path="out/everything.jsonl", kinds=["frames", "events"]),
        CallbackSinkConfig(function="hooks:on_event", kinds=["events"]),
        VideoSinkConfig(path="out/door.mp4", sources=["door"], annotate=False),
    ],
)


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "streamer.toml"
    path.write_text(text)
    return path


def with_stage(stage: dict[str, Any]) -> dict[str, Any]:
    return {"sources": [{"type": "file", "id": "cam", "path": "cam.mp4"}], "stages": [stage]}


def with_sink(sink: dict[str, Any]) -> dict[str, Any]:
    return {"sources": [{"type": "file", "id": "cam", "path": "cam.mp4"}], "sinks": [sink]}


def config_error(source: Any) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_config(source)
    return caught.value


BAND = [[0, 0], [10, 0], [10, 10]]


def test_load_config_reads_the_tracking_zones_presence_and_anonymize_tables(tmp_path):
    assert load_config(write_toml(tmp_path, TOML)) == EXPECTED


def test_load_config_round_trips_the_new_tables_through_builtins(tmp_path):
    loaded = load_config(write_toml(tmp_path, TOML))

    assert load_config(msgspec.to_builtins(loaded)) == loaded


def test_load_config_when_new_tables_are_bare_fills_their_defaults():
    zones = {
        "type": "zones",
        "zones": [{"name": "bay", "polygon": BAND}],
        "lines": [{"name": "l", "start": [0, 0], "end": [1, 1]}],
    }
    stages = [{"type": "anonymize"}, {"type": "track"}, zones, {"type": "presence"}]

    config = load_config({**with_stage(stages[0]), "stages": stages})

    anonymize, track, zones, presence = config.stages
    assert (anonymize.method, anonymize.model, anonymize.classes, anonymize.min_confidence) == (
        "blur",
        "centerface",
        None,
        0.3,
    )
    assert (track.activation_threshold, track.lost_frames, track.min_frames) == (0.25, 30, 1)
    assert (zones.relative, zones.sources, zones.forget_after_frames) == (False, None, 30)
    assert zones.zones[0].anchor == "bottom_center" and zones.zones[0].classes is None
    assert zones.lines[0].anchors == ["top_left", "top_right", "bottom_left", "bottom_right"]
    assert (presence.classes, presence.appear_frames, presence.disappear_frames) == (None, 3, 15)


def test_load_config_sinks_take_frames_unless_kinds_says_otherwise():
    sinks = [
        {"type": "jsonl", "path": "o.jsonl"},
        {"type": "webhook", "url": "https://example.com/hook"},
        {"type": "mqtt"},
        {"type": "callback", "function": "hooks:f"},
    ]

    config = load_config({**with_sink(sinks[0]), "sinks": sinks})

    assert [type(sink) for sink in config.sinks] == [JsonlSinkConfig, WebhookSinkConfig, MqttSinkConfig, CallbackSinkConfig]
    assert all(sink.kinds == ["frames"] for sink in config.sinks)


def test_load_config_video_sinks_annotate_by_default():
    config = load_config(with_sink({"type": "video", "path": "o.mp4"}))

    assert config.sinks[0].annotate is True


@pytest.mark.parametrize(
    ("stage", "path", "says"),
    [
        ({"type": "track", "lost_frame": 3}, "$.stages[0].lost_frame", "unknown key 'lost_frame'"),
        ({"type": "track", "activation_threshold": 1.5}, "$.stages[0].activation_threshold", "<= 1.0"),
        ({"type": "track", "min_frames": 0}, "$.stages[0].min_frames", ">= 1"),
        ({"type": "zones"}, "$.stages[0]", "at least one of `zones` and `lines`"),
        (
            {"type": "zones", "zones": [{"name": "a", "polgon": BAND}]},
            "$.stages[0].zones[0].polgon",
            "unknown key 'polgon'",
        ),
        (
            {"type": "zones", "zones": [{"name": "a", "polygon": BAND[:2]}]},
            "$.stages[0].zones[0].polygon",
            "length >= 3",
        ),
        ({"type": "zones", "zones": [{"polygon": BAND}]}, "$.stages[0].zones[0].name", "missing"),
        (
            {"type": "zones", "zones": [{"name": "a", "polygon": BAND, "anchor": "middle"}]},
            "$.stages[0].zones[0].anchor",
            "'middle'",
        ),
        (
            {"type": "zones", "lines": [{"name": "a", "start": [0, 0, 1], "end": [1, 1]}]},
            "$.stages[0].lines[0].start",
            "length 2",
        ),
        ({"type": "zones", "lines": [{"name": "a", "start": [0, 0]}]}, "$.stages[0].lines[0].end", "missing"),
        (
            {"type": "zones", "lines": [{"name": "a", "start": [0, 0], "end": [1, 1], "anchors": ["top"]}]},
            "$.stages[0].lines[0].anchors[0]",
            "'top'",
        ),
        (
            {"type": "zones", "lines": [{"name": "a", "start": [0, 0], "end": [1, 1], "min_crossing_frames": 0}]},
            "$.stages[0].lines[0].min_crossing_frames",
            ">= 1",
        ),
        (
            {
                "type": "zones",
                "zones": [{"name": "a", "polygon": BAND}],
                "lines": [{"name": "a", "start": [0, 0], "end": [1, 1]}],
            },
            "$.stages[0]",
            "names must be unique",
        ),
        (
            {"type": "zones", "zones": [{"name": "a", "polygon": BAND}], "forget_after_frames": 0},
            "$.stages[0].forget_after_frames",
            ">= 1",
        ),
        ({"type": "presence", "appear_frames": 0}, "$.stages[0].appear_frames", ">= 1"),
        ({"type": "presence", "debounce": 3}, "$.stages[0].debounce", "unknown key 'debounce'"),
        ({"type": "anonymize", "method": "smudge"}, "$.stages[0].method", "'smudge'"),
        ({"type": "anonymize", "strength": 0}, "$.stages[0].strength", "> 0.0"),
        ({"type": "anonymize", "padding": 2}, "$.stages[0].padding", "<= 1.0"),
        ({"type": "anonymize", "device": "gpu"}, "$.stages[0].device", "regex"),
    ],
)
def test_load_config_when_a_new_stage_table_is_wrong_names_the_key_path(stage, path, says):
    error = config_error(with_stage(stage))

    assert error.path == path
    assert path in str(error) and says in str(error)


def test_load_config_when_a_nested_zone_key_is_wrong_in_toml_names_the_path_and_file(tmp_path):
    path = write_toml(tmp_path, TOML.replace('anchor = "center"', 'ancor = "center"'))

    error = config_error(path)

    assert error.path == "$.stages[2].zones[0].ancor" and error.file == str(path)


@pytest.mark.parametrize(
    ("kinds", "path", "says"),
    [
        (["alerts"], "$.sinks[0].kinds[0]", "'alerts'"),
        ([], "$.sinks[0].kinds", "length >= 1"),
        ("events", "$.sinks[0].kinds", "array"),
    ],
)
def test_load_config_when_kinds_is_wrong_names_the_key_path(kinds, path, says):
    error = config_error(with_sink({"type": "jsonl", "path": "o.jsonl", "kinds": kinds}))

    assert error.path == path and says in str(error)


@pytest.mark.parametrize("sink", [{"type": "video", "path": "o.mp4"}, {"type": "snapshot", "folder": "shots"}])
def test_load_config_when_a_picture_sink_names_kinds_rejects_the_key(sink):
    error = config_error(with_sink({**sink, "kinds": ["events"]}))

    assert error.path == "$.sinks[0].kinds" and "unknown key 'kinds'" in str(error)


def test_load_config_when_a_zones_stage_names_an_unknown_source_names_the_key_path():
    error = config_error(
        with_stage({"type": "zones", "zones": [{"name": "a", "polygon": BAND}], "sources": ["camera"]})
    )

    assert error.path == "$.stages[0].sources[0]" and "'camera'" in str(error)
