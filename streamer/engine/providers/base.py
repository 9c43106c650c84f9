"""The WeightsProvider interface: given a model id, describe the model (or say it is not ours)."""

from __future__ import annotations

from typing import Protocol

from ..entities import ModelDocument

REGISTRY_URL_VARIABLE = "STREAMER_REGISTRY_URL"  # where the HTTP registry is, when options do not say


class WeightsProvider(Protocol):
    """A source of model documents: an HTTP registry, a local folder, installed distributions ...

    `get_model` returns None when this provider does not know the id (the next one is asked), and
    raises a ModelError subclass when it knows the id but cannot serve it. File URLs in the
    document are `http(s)://` (downloaded into the cache) or `file://` (used in place).
    """

    name: str

    async def get_model(self, model_id: str) -> ModelDocument | None: ...
