"""State a stage keeps per source, started afresh when the source's picture stream starts again."""

from __future__ import annotations

from typing import Callable, Generic, TypeVar

from ..frames import Frame

State = TypeVar("State")


class PerSource(Generic[State]):
    """One `State` per source id, made by `new(frame)` on first use.

    It is made again when the source reconnects (or a looping file starts over: `frame.session`
    changes) or its resolution changes, so a tracker never matches boxes across a cut. With
    `keep_retired`, the state it replaces waits in `retired` until the owner takes it (to close what
    was open, for example); otherwise it is let go at once.
    """

    def __init__(self, new: Callable[[Frame], State], keep_retired: bool = False) -> None:
        self._new = new
        self._keep_retired = keep_retired
        self._states: dict[str, tuple[tuple[int, int, int], State]] = {}
        self.retired: dict[str, State] = {}

    def __getitem__(self, frame: Frame) -> State:
        epoch = (frame.session, frame.width, frame.height)
        entry = self._states.get(frame.source_id)
        if entry is None or entry[0] != epoch:
            if entry is not None and self._keep_retired:
                self.retired[frame.source_id] = entry[1]
            entry = (epoch, self._new(frame))
            self._states[frame.source_id] = entry
        return entry[1]

    def __len__(self) -> int:
        return len(self._states)
