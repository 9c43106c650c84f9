"""Hooks the pipeline calls as work happens, for metrics and checkpoints to listen to.

The pipeline itself only keeps counts (see summary.py); an Observer sees each batch, each stage
call and each write, and must return at once (it runs on the event loop).
"""

from __future__ import annotations

from typing import Protocol

from ..frames import Event, Result


class Observer(Protocol):
    def batch_done(self, size: int, seconds: float) -> None:
        """A batch of `size` frames went through the model in `seconds`."""

    def stage_done(self, stage: str, seconds: float) -> None:
        """One call of the stage named `stage` took `seconds`."""

    def sink_wrote(self, sink: str, item: Result | Event) -> None:
        """The sink described as `sink` finished writing `item`."""


class IgnoringObserver:
    """Every hook a no-op: subclass it and override only the hooks you need."""

    def batch_done(self, size: int, seconds: float) -> None:
        pass

    def stage_done(self, stage: str, seconds: float) -> None:
        pass

    def sink_wrote(self, sink: str, item: Result | Event) -> None:
        pass


class Observers:
    """Several observers behind one (an empty list costs a loop over nothing)."""

    def __init__(self) -> None:
        self.members: list[Observer] = []

    def add(self, observer: Observer) -> None:
        self.members.append(observer)

    def batch_done(self, size: int, seconds: float) -> None:
        for member in self.members:
            member.batch_done(size, seconds)

    def stage_done(self, stage: str, seconds: float) -> None:
        for member in self.members:
            member.stage_done(stage, seconds)

    def sink_wrote(self, sink: str, item: Result | Event) -> None:
        for member in self.members:
            member.sink_wrote(sink, item)
