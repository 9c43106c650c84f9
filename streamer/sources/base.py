"""The Source interface: a blocking iterator of frames, run by the pipeline in a worker thread."""

from __future__ import annotations

import threading
from typing import Iterator, Protocol

from ..frames import Frame


class Source(Protocol):
    """Anything that yields frames.

    `frames` runs in its own thread and must return soon after `stop` is set; it raises a
    `SourceError` subclass when the source cannot be opened or read.
    """

    id: str
    live: bool

    def frames(self, stop: threading.Event) -> Iterator[Frame]: ...

    def describe(self) -> str:
        """A short name for logs and errors (never containing credentials)."""
        ...
