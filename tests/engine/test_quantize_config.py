"""`[model] quantization` as a list: the quantizations a config allows reach negotiation."""

from __future__ import annotations

import pytest

from streamer.config import load_config
from streamer.errors import ConfigError
from streamer.pipeline.runner import model_options

SOURCES = [{"type": "lavfi", "graph": "testsrc2"}]


def test_model_quantization_when_a_list_allows_int8_reaches_the_load_options():
    config = load_config({"sources": SOURCES, "model": {"id": "nudenet-320n", "quantization": ["fp32", "int8"]}})

    assert model_options(config).allowed_quantizations == ("fp32", "int8")


def test_model_quantization_when_one_is_named_allows_only_it():
    config = load_config({"sources": SOURCES, "model": {"quantization": "fp16"}})

    assert model_options(config).allowed_quantizations == ("fp16",)


def test_model_quantization_when_the_list_is_empty_is_a_config_error_at_its_key():
    with pytest.raises(ConfigError) as caught:
        load_config({"sources": SOURCES, "model": {"quantization": []}})

    assert caught.value.path == "$.model.quantization"
