"""load_config: TOML files, dicts and Config objects; every error names the bad key's path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

from streamer.config.loader import load_config
from streamer.config.schema import (
    BatchingConfig,
    CallbackSinkConfig,
    Config,
    CustomStageConfig,
    FileSourceConfig,
    FilterStageConfig,
    JsonlSinkConfig,
    LavfiSourceConfig,
    ModelConfig,
    VideoSinkConfig,
)
from streamer.errors import ConfigError, StreamerError

FULL_TOML = """
[model]
id = "centerface"
confidence = 0.4
iou = 0.5
input_size = [640, 480]
threads = 2

[batching]
max_batch_size = 8
max_wait_ms = 25.0

[[sources]]
id = "door"
type = "file"
path = "media/door.mp4"
realtime = true
loop = true
max_frames = 100

[[sources]]
id = "pattern"
type = "lavfi"
graph = "testsrc2=size=64x48:rate=30"
policy = "block"
queue_size = 4

[[stages]]
type = "filter"
min_confidence = 0.6
classes = ["face"]

[[stages]]
type = "custom"
function = "mypkg.stages:blur"
options = { radius = 3 }

[[sinks]]
type = "jsonl"
path = "out/results.jsonl"

[[sinks]]
type = "video"
path = "out/door.mp4"
sources = ["door"]
crf = 30

[[sinks]]
type = "callback"
function = "mypkg.sinks:print_result"
sources = ["door", "pattern"]
"""

FULL_CONFIG = Config(
    model=ModelConfig(id="centerface", confidence=0.4, iou=0.5, input_size=(640, 480), threads=2),
    batching=BatchingConfig(max_batch_size=8, max_wait_ms=25.0),
    sources=[
        FileSourceConfig(id="door", path="media/door.mp4", realtime=True, loop=True, max_frames=100),
        LavfiSourceConfig(id="pattern", graph="testsrc2=size=64x48:rate=30", policy="block", queue_size=4),
    ],
    stages=[
        FilterStageConfig(min_confidence=0.6, classes=["face"]),
        CustomStageConfig(function="mypkg.stages:blur", options={"radius": 3}),
    ],
    sinks=[
        JsonlSinkConfig(path="out/results.jsonl"),
        VideoSinkConfig(path="out/door.mp4", sources=["door"], crf=30),
        CallbackSinkConfig(function="mypkg.sinks:print_result", sources=["door", "pattern"]),
    ],
)


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "streamer.toml"
    path.write_text(text)
    return path


def file_source(**fields: Any) -> dict[str, Any]:
    return {"type": "file", "path": "clip.mp4", **fields}


def config_error(source: str | Path | dict[str, Any] | Config) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_config(source)
    return caught.value


# --- valid configs --------------------------------------------------------------------------------


def test_load_config_reads_a_full_toml_file(tmp_path: Path) -> None:
    assert load_config(write_toml(tmp_path, FULL_TOML)) == FULL_CONFIG


def test_load_config_accepts_a_str_path(tmp_path: Path) -> None:
    assert load_config(str(write_toml(tmp_path, FULL_TOML))) == FULL_CONFIG


def test_load_config_round_trips_through_builtins(tmp_path: Path) -> None:
    loaded = load_config(write_toml(tmp_path, FULL_TOML))

    assert load_config(msgspec.to_builtins(loaded)) == loaded


def test_load_config_accepts_a_config_object() -> None:
    assert load_config(FULL_CONFIG) == FULL_CONFIG


def test_load_config_fills_defaults_for_absent_tables() -> None:
    config = load_config({"sources": [file_source()]})

    assert config.model == ModelConfig()
    assert config.batching == BatchingConfig(max_batch_size=4, max_wait_ms=10.0)
    assert config.stages == [] and config.sinks == []


def test_load_config_decodes_tagged_variants_by_type(tmp_path: Path) -> None:
    config = load_config(write_toml(tmp_path, FULL_TOML))

    assert [type(s) for s in config.sources] == [FileSourceConfig, LavfiSourceConfig]
    assert [type(s) for s in config.stages] == [FilterStageConfig, CustomStageConfig]
    assert [type(s) for s in config.sinks] == [JsonlSinkConfig, VideoSinkConfig, CallbackSinkConfig]


# --- default source ids ---------------------------------------------------------------------------


def test_load_config_names_a_file_source_after_its_stem() -> None:
    config = load_config({"sources": [file_source(path="videos/front door.mp4")]})

    assert config.sources[0].id == "front-door"  # what an id may not hold becomes '-'


def test_load_config_names_lavfi_sources_by_kind_and_index() -> None:
    config = load_config(
        {"sources": [{"type": "lavfi", "graph": "testsrc2"}, {"type": "lavfi", "graph": "testsrc"}]}
    )

    assert [s.id for s in config.sources] == ["lavfi0", "lavfi1"]


def test_load_config_when_file_sources_share_a_stem_gives_distinct_ids() -> None:
    config = load_config({"sources": [file_source(path="a/clip.mp4"), file_source(path="b/clip.mp4")]})

    ids = [s.id for s in config.sources]
    assert ids[0] == "clip" and ids[1].startswith("clip") and len(set(ids)) == 2


def test_load_config_when_default_file_ids_would_collide_gives_distinct_ids() -> None:
    # Nobody wrote an id, so no id can be "used twice": the defaults must stay apart on their own.
    config = load_config({"sources": [file_source(path="cam-1.mp4"), file_source(path="cam.mp4")]})

    ids = [s.id for s in config.sources]
    assert ids[0] == "cam-1" and len(set(ids)) == 2


def test_load_config_keeps_explicit_ids() -> None:
    config = load_config({"sources": [file_source(id="cam"), {"type": "lavfi", "graph": "testsrc2", "id": "x"}]})

    assert [s.id for s in config.sources] == ["cam", "x"]


def test_load_config_lets_a_sink_name_a_default_id() -> None:
    config = load_config(
        {"sources": [file_source(path="door.mp4")], "sinks": [{"type": "jsonl", "path": "o", "sources": ["door"]}]}
    )

    assert config.sinks[0].sources == ["door"]


def test_load_config_does_not_modify_the_callers_config() -> None:
    original = Config(sources=[FileSourceConfig(path="door.mp4")])

    loaded = load_config(original)

    assert loaded.sources[0].id == "door"
    assert original.sources[0].id is None


# --- errors name the key path ---------------------------------------------------------------------


def test_load_config_when_top_level_key_is_unknown(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'foo = 1\n[[sources]]\ntype = "file"\npath = "a.mp4"\n')

    error = config_error(path)

    assert error.path == "$.foo"
    assert "$.foo" in str(error) and "'foo'" in str(error)
    assert error.file == str(path) and str(path) in str(error)


def test_load_config_when_source_key_is_unknown(tmp_path: Path) -> None:
    text = '[[sources]]\ntype = "file"\npath = "a.mp4"\n[[sources]]\ntype = "file"\npath = "b.mp4"\nurll = "x"\n'

    error = config_error(write_toml(tmp_path, text))

    assert error.path == "$.sources[1].urll"
    assert "$.sources[1].urll" in str(error) and "urll" in str(error)


def test_load_config_when_required_key_is_missing(tmp_path: Path) -> None:
    error = config_error(write_toml(tmp_path, '[[sources]]\ntype = "file"\n'))

    assert error.path == "$.sources[0].path"
    assert "$.sources[0].path" in str(error) and "missing" in str(error)


def test_load_config_when_value_has_wrong_type(tmp_path: Path) -> None:
    error = config_error(write_toml(tmp_path, '[[sources]]\ntype = "file"\npath = 3\n'))

    assert error.path == "$.sources[0].path"
    assert "str" in str(error) and "int" in str(error)


@pytest.mark.parametrize(
    ("table", "path"),
    [
        ('[model]\nconfidence = 1.5\n', "$.model.confidence"),
        ('[model]\niou = -0.1\n', "$.model.iou"),
        ('[batching]\nmax_batch_size = 0\n', "$.batching.max_batch_size"),
        ('[batching]\nmax_wait_ms = -1\n', "$.batching.max_wait_ms"),
    ],
)
def test_load_config_when_value_violates_a_constraint(tmp_path: Path, table: str, path: str) -> None:
    error = config_error(write_toml(tmp_path, table + '[[sources]]\ntype = "file"\npath = "a.mp4"\n'))

    assert error.path == path
    assert path in str(error)


def test_load_config_when_source_type_is_unknown(tmp_path: Path) -> None:
    error = config_error(write_toml(tmp_path, '[[sources]]\ntype = "ndi"\nurl = "ndi://cam"\n'))

    assert error.path == "$.sources[0].type"
    assert "ndi" in str(error)


def test_load_config_when_sources_list_is_empty(tmp_path: Path) -> None:
    error = config_error(write_toml(tmp_path, "sources = []\n"))

    assert error.path == "$.sources"


def test_load_config_when_sources_are_absent(tmp_path: Path) -> None:
    error = config_error(write_toml(tmp_path, "[batching]\nmax_batch_size = 2\n"))

    assert error.path == "$.sources"


def test_load_config_when_toml_is_invalid(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[[sources]\ntype = 'file'\n")

    error = config_error(path)

    assert "not valid TOML" in str(error)
    assert error.path == "$" and error.file == str(path)


def test_load_config_when_file_is_missing(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"

    error = config_error(path)

    assert "cannot read" in str(error) and str(path) in str(error)
    assert isinstance(error.__cause__, FileNotFoundError)


def test_load_config_when_path_is_unreadable(tmp_path: Path) -> None:
    error = config_error(tmp_path)  # a directory: read_bytes fails even for root

    assert "cannot read" in str(error) and str(tmp_path) in str(error)
    assert isinstance(error.__cause__, OSError)


def test_load_config_when_source_ids_repeat() -> None:
    error = config_error({"sources": [file_source(id="cam"), file_source(id="cam")]})

    assert error.path == "$.sources[1].id"
    assert "'cam'" in str(error)


def test_load_config_when_a_default_id_would_take_an_explicit_one_gives_way() -> None:
    config = load_config({"sources": [file_source(path="door.mp4"), file_source(id="door")]})

    assert [source.id for source in config.sources] == ["door-2", "door"]


def test_load_config_when_sink_names_an_unknown_source() -> None:
    data = {"sources": [file_source(id="cam")], "sinks": [{"type": "jsonl", "path": "o", "sources": ["camera"]}]}

    error = config_error(data)

    assert error.path == "$.sinks[0].sources[0]"
    assert "'camera'" in str(error) and "cam" in str(error)


def test_load_config_when_video_sink_has_several_sources_and_no_sources_key() -> None:
    data = {"sources": [file_source(id="a"), file_source(id="b")], "sinks": [{"type": "video", "path": "o.mp4"}]}

    error = config_error(data)

    assert error.path == "$.sinks[0].sources"
    assert "exactly one source" in str(error)


def test_load_config_when_video_sink_lists_several_sources() -> None:
    data = {
        "sources": [file_source(id="a"), file_source(id="b")],
        "sinks": [{"type": "video", "path": "o.mp4", "sources": ["a", "b"]}],
    }

    assert config_error(data).path == "$.sinks[0].sources"


def test_load_config_accepts_a_video_sink_without_sources_key_when_one_source_exists() -> None:
    config = load_config({"sources": [file_source(id="a")], "sinks": [{"type": "video", "path": "o.mp4"}]})

    assert isinstance(config.sinks[0], VideoSinkConfig)


def test_load_config_when_dict_is_invalid_reports_no_file() -> None:
    error = config_error({"sources": [file_source()], "modle": {}})

    assert error.path == "$.modle" and error.file is None


def test_load_config_when_config_object_is_invalid() -> None:
    error = config_error(Config(sources=[FileSourceConfig(path="a.mp4")], batching=BatchingConfig(max_batch_size=0)))

    assert error.path == "$.batching.max_batch_size"


# --- the error type -------------------------------------------------------------------------------


def test_config_error_is_a_streamer_error_and_a_value_error() -> None:
    error = config_error({"sources": []})

    assert isinstance(error, StreamerError) and isinstance(error, ValueError)


def test_config_error_has_a_help_url_to_its_docs() -> None:
    error = config_error({"sources": []})

    assert error.help_url().endswith("#configerror")
    assert error.help_url() in str(error)


def test_config_error_is_chained_to_the_msgspec_error() -> None:
    error = config_error({"sources": [], "foo": 1})

    assert isinstance(error.__cause__, msgspec.ValidationError)


@pytest.mark.parametrize("bad_id", ["a\nb", "cam\n", "", "-cam", "cam 2", "caméra", "c" * 65])
def test_load_config_when_a_source_id_is_not_an_identifier_names_its_key_path(bad_id):
    with pytest.raises(ConfigError, match=r"^\$\.sources\[1\]\.id: an id is 1 to 64 letters, digits"):
        load_config({"sources": [{"type": "lavfi", "graph": "testsrc2"}, {"type": "lavfi", "graph": "testsrc2", "id": bad_id}]})


def test_load_config_when_a_file_name_is_no_identifier_generates_one_that_is():
    paths = ["videos/my clip (1).mp4", "é.mp4", f"{'long' * 30}.mp4", "-.mp4"]
    config = load_config({"sources": [{"type": "file", "path": path} for path in paths]})
    assert [source.id for source in config.sources] == ["my-clip-1", "file1", ("long" * 30)[:56], "file3"]


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "example.com"])
def test_load_config_when_the_server_listens_off_loopback_without_a_token_says_how_to_set_one(host):
    with pytest.raises(ConfigError, match=r"^\$\.server: .*set `token_env`"):
        load_config({"sources": [{"type": "lavfi", "graph": "testsrc2"}], "server": {"host": host}})
    config = load_config({"sources": [{"type": "lavfi", "graph": "testsrc2"}], "server": {"host": host, "token_env": "T"}})
    assert config.server.host == host
