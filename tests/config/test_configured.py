"""A runtime class built from Python is checked by its config struct, exactly as TOML is."""

import pytest

from streamer.config import configured, load_config
from streamer.config.schema import TrackStageConfig
from streamer.errors import ConfigError
from streamer.pipeline.presence import PresenceStage
from streamer.pipeline.tracking import TrackStage


def test_configured_when_options_are_given_takes_the_struct_defaults_for_the_rest():
    config = configured(TrackStageConfig, None, {"lost_frames": 5})
    assert config.lost_frames == 5 and config.activation_threshold == TrackStageConfig().activation_threshold


def test_stage_when_a_bad_value_comes_from_python_raises_the_same_error_as_toml():
    with pytest.raises(ConfigError) as from_python:
        PresenceStage(appear_frames=0)
    with pytest.raises(ConfigError) as from_toml:
        load_config({"sources": [{"type": "lavfi", "graph": "testsrc2"}], "stages": [{"type": "presence", "appear_frames": 0}]})
    assert from_python.value.path == "$.appear_frames" and from_toml.value.path == "$.stages[0].appear_frames"
    assert from_python.value.message.removeprefix("$.appear_frames") == from_toml.value.message.removeprefix(
        "$.stages[0].appear_frames"
    )


def test_stage_when_an_option_is_misspelt_names_it():
    with pytest.raises(ConfigError, match="lost_frame"):
        TrackStage(lost_frame=5)


def test_stage_when_given_a_struct_and_options_refuses_both():
    with pytest.raises(ConfigError, match="not both"):
        TrackStage(TrackStageConfig(), lost_frames=3)


def test_configured_when_a_path_is_a_path_object_takes_the_string_toml_would_hold(tmp_path):
    from streamer.config.schema import FileSourceConfig

    config = configured(FileSourceConfig, None, {"path": tmp_path / "clip.mp4"})

    assert config.path == str(tmp_path / "clip.mp4")
