"""Every error class has a help_url whose anchor docs/errors.md defines."""

from __future__ import annotations

import re
from pathlib import Path

from streamer.errors import ConfigError, StreamerError, all_error_classes

DOCS = Path(__file__).resolve().parents[1] / "docs" / "errors.md"


def test_every_error_class_has_an_anchor_in_the_docs():
    anchors = set(re.findall(r'<a id="([^"]+)"></a>', DOCS.read_text()))

    classes = all_error_classes()

    assert len(classes) >= 13
    missing = [cls.__name__ for cls in classes if cls.help_url().rpartition("#")[2] not in anchors]
    assert missing == []


def test_every_error_class_has_its_own_anchor():
    anchors = [cls.anchor for cls in all_error_classes()]

    assert len(anchors) == len(set(anchors))


def test_error_message_ends_with_its_help_url():
    error = ConfigError("unknown key", "$.sources[0].x", file="a.toml")

    assert isinstance(error, StreamerError) and isinstance(error, ValueError)
    assert str(error).startswith("a.toml: $.sources[0].x: unknown key")
    assert str(error).endswith("docs/errors.md#configerror)")
