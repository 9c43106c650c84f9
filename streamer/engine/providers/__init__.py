"""Weights providers: where model documents and files come from.

Asked in order: a local models folder, models shipped in installed distributions, providers that
other packages register under the `streamer.weights_providers` entry point group (each entry point
names a callable returning a provider), then the HTTP registry when one is configured.
"""

from __future__ import annotations

import importlib.metadata
import os
import logging

from ...errors import ModelError
from ..entities import LoadOptions
from .base import REGISTRY_URL_VARIABLE, WeightsProvider

log = logging.getLogger("streamer.engine")

ENTRY_POINT_GROUP = "streamer.weights_providers"


def default_providers(options: LoadOptions) -> list[WeightsProvider]:
    from .embedded import EmbeddedProvider
    from .local import LocalDirectoryProvider

    providers: list[WeightsProvider] = [LocalDirectoryProvider(), EmbeddedProvider(), *plugin_providers()]
    registry = registry_provider(options)
    return providers + ([registry] if registry is not None else [])


def registry_provider(options: LoadOptions) -> WeightsProvider | None:
    """The HTTP registry, when a URL is configured (options, then STREAMER_REGISTRY_URL)."""
    if not (options.registry_url or os.environ.get(REGISTRY_URL_VARIABLE)):
        return None
    from .http import HttpRegistryProvider  # imports aiohttp: only when there is a registry to ask

    return HttpRegistryProvider(options.registry_url, options.registry_token)


def plugin_providers() -> list[WeightsProvider]:
    """Providers registered by installed packages through the entry point group."""
    found: list[WeightsProvider] = []
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            found.append(entry_point.load()())
        except Exception as exc:  # a broken plugin must name itself, not break every load
            raise ModelError(f"weights provider plugin {entry_point.name!r} ({entry_point.value}) failed: {exc}") from exc
    return found


__all__ = ["ENTRY_POINT_GROUP", "WeightsProvider", "default_providers", "plugin_providers"]
