"""The Source interface: a blocking iterator of frames and state changes, run in a worker thread."""

from __future__ import annotations

import threading
from typing import Iterable, Iterator, Protocol

from ..frames import Frame
from .state import StateChange
from .stats import SourceStats


class Source(Protocol):
    """Anything that yields frames.

    `frames` runs in its own thread and must return soon after `stop` is set. Between frames it may
    yield `StateChange`s (connecting, running, reconnecting ...). It raises a `SourceError` subclass
    when the source cannot be opened or read and will not recover. Frames carry its id, an index
    that grows by one and a pts that only grows. tests/sources/test_contract.py is the suite every
    source passes: a new kind of source is done when it is green there.
    """

    id: str
    live: bool
    catches_up: bool
    """A live camera that, once its decoding falls behind its stream, reads on to its next keyframe
    (catch_up.py): its thread may yield the CPU to the model, since it cannot fall behind for good."""
    stats: SourceStats
    """What it counted so far (attempts, outages, decode errors, timestamp jumps, frames over
    max_fps, a damaged file): its thread writes it, the pipeline copies it into the summary."""

    def frames(self, stop: threading.Event) -> Iterator[Frame | StateChange]: ...

    def describe(self) -> str:
        """A short name for logs and errors (never containing credentials)."""
        ...


def only_frames(items: Iterable[Frame | StateChange]) -> Iterator[Frame]:
    """The frames of a source's output, without its state changes."""
    return (item for item in items if isinstance(item, Frame))
