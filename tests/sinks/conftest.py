"""Real MQTT brokers (Debian's mosquitto) on loopback; skipped where mosquitto is not installed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.sinks.mosquitto import MISSING_REASON, Mosquitto, mosquitto_binary


@pytest.fixture
def make_mosquitto(tmp_path: Path) -> Iterator[Callable[..., Mosquitto]]:
    """Brokers with Mosquitto's keywords (users=...), not yet started; all stopped at teardown."""
    if mosquitto_binary() is None:
        pytest.skip(MISSING_REASON)
    brokers: list[Mosquitto] = []

    def make(**options: Any) -> Mosquitto:
        broker = Mosquitto(tmp_path / f"mosquitto-{len(brokers)}", **options)
        brokers.append(broker)
        return broker

    yield make
    for broker in brokers:
        broker.stop()


@pytest.fixture
def mosquitto(make_mosquitto: Callable[..., Mosquitto]) -> Mosquitto:
    """A running broker that allows anonymous clients, with persistence, on 127.0.0.1:<free port>."""
    return make_mosquitto().start()
