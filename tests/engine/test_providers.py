"""Weights providers other packages register through the `streamer.weights_providers` entry point."""

from __future__ import annotations

import sys

import pytest

from streamer.engine import AutoModel
from streamer.engine.providers import plugin_providers
from streamer.errors import ModelError

PROVIDER_MODULE = '''
from streamer.engine.providers.embedded import EMBEDDED, embedded_document


class PluginProvider:
    name = "plugin"

    async def get_model(self, model_id):
        if model_id != "plugin/faces":
            return None
        document = embedded_document(EMBEDDED["centerface"])
        document.model_id = model_id
        return document


def make():
    return PluginProvider()


def broken():
    raise RuntimeError("plugin exploded")
'''


def install_plugin(folder, target: str) -> None:
    """A distribution on sys.path whose entry point registers a provider."""
    (folder / "my_plugin.py").write_text(PROVIDER_MODULE)
    info = folder / "my_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[streamer.weights_providers]\nmine = my_plugin:{target}\n")


@pytest.fixture
def plugin_path(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("my_plugin", None)


def test_plugin_provider_serves_models_by_id(plugin_path, astronaut):
    install_plugin(plugin_path, "make")

    model = AutoModel.from_pretrained("plugin/faces")

    assert [provider.name for provider in plugin_providers()] == ["plugin"]
    assert model.info.model_id == "plugin/faces" and len(model(astronaut)) == 1


def test_plugin_provider_that_fails_is_named_in_the_error(plugin_path):
    install_plugin(plugin_path, "broken")

    with pytest.raises(ModelError, match="'mine'.*plugin exploded"):
        AutoModel.from_pretrained("plugin/faces")
