"""Hypothesis against load_config: whatever the tables and the TOML text, a Config or a ConfigError
whose message starts with its key path; never another exception."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamer.config.loader import load_config
from streamer.config.schema import ID_PATTERN, Config
from streamer.errors import ConfigError

KEYS = ["sources", "type", "id", "graph", "path", "url", "model", "server", "host", "port", "token_env",
        "allowed_hosts", "sinks", "stages", "batching", "max_batch_size", "options", "run", "sources[0]",
        "lavfi", "file", "rtsp", "hls", "jsonl", "filter", "min_confidence", "api_sources", "queue_size"]
SCALARS = (st.none() | st.booleans() | st.integers() | st.floats() | st.sampled_from(KEYS)
           | st.text(max_size=20) | st.sampled_from(["0.0.0.0", "127.0.0.1", "rtsp://h/x", "a\nb", "testsrc2"]))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), inner, max_size=4), max_leaves=20)
SOURCE = st.fixed_dictionaries({"type": st.sampled_from(["lavfi", "file", "rtsp", "hls", "webcam", "x"])},
                               optional={key: VALUES for key in ("id", "graph", "path", "url", "options", "max_fps")})
TABLES = st.fixed_dictionaries({}, optional={"sources": st.lists(SOURCE, max_size=3) | VALUES,
                                             "server": st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=3),
                                             **{key: VALUES for key in ("model", "sinks", "stages", "batching", "run")}})
# 600 and 300 examples: about 25 s together on one core (2000 each took 108 s)
FUZZ = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _loads_or_names_the_key(source, file: str | None = None) -> None:
    try:
        config = load_config(source)
    except ConfigError as exc:
        assert exc.path.startswith("$"), exc
        assert exc.message.startswith(f"{file}: {exc.path}" if file else exc.path), exc
    else:
        assert isinstance(config, Config)
        assert all(re.search(ID_PATTERN, source.id) for source in config.sources), config.sources


@FUZZ
@given(TABLES | st.dictionaries(st.text(max_size=8), VALUES, max_size=4))
def test_load_config_when_given_any_tables_returns_a_config_or_a_config_error_with_its_path(tables):
    _loads_or_names_the_key(tables)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(key))} = {_toml_value(item)}" for key, item in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return json.dumps(value) if value is not None else '""'


def _toml(tables: dict) -> str:
    return "\n".join(f"{json.dumps(str(key))} = {_toml_value(value)}" for key, value in tables.items())


EXAMPLE = '[model]\nid = "centerface"\n[server]\nport = 0\n[[sources]]\nid = "pat"\ntype = "lavfi"\ngraph = "testsrc2"\n'


@st.composite
def toml_texts(draw) -> str:
    kind = draw(st.sampled_from(["tables", "mutated", "text"]))
    if kind == "tables":
        return _toml(draw(TABLES))
    if kind == "text":
        return draw(st.text(max_size=200))
    start = draw(st.integers(0, len(EXAMPLE)))
    end = draw(st.integers(start, len(EXAMPLE)))
    return EXAMPLE[:start] + draw(st.text(max_size=20)) + EXAMPLE[end:]


@settings(FUZZ, max_examples=300)
@given(toml_texts())
def test_load_config_when_given_any_toml_text_returns_a_config_or_a_config_error_with_its_path(text):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.toml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        _loads_or_names_the_key(path, file=str(path))
