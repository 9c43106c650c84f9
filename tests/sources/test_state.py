"""The states a source reports."""

from __future__ import annotations

from streamer.sources.state import SourceState


def test_final_states_are_ended_and_failed():
    assert {state for state in SourceState if state.final} == {SourceState.ENDED, SourceState.FAILED}
