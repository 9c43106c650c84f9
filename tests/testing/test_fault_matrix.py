"""Faults injected with streamer.testing.FaultProxy on every link a deployment depends on (tests/faults.py).

A few representative cases run by default, one per link; the whole matrix is marked `slow`
(`python -m pytest -m slow tests/testing`, or `python bench/faults.py` for its table).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from streamer.engine import AutoModel
from tests.faults import HEIGHT, RECOVERY_BOUND_S, WIDTH, Case, matrix, run_case, running_servers
from tests.rtsp import MISSING_REASON, gstreamer_available
from tests.sinks.mosquitto import mosquitto_binary

REPRESENTATIVE = {"freeze-rtsp-tcp", "cut-rtsp-udp", "stall-hls", "cut_refuse-webhook", "cut-mqtt"}
FIRST_RESULT_SLACK_S = 1.0  # the first keyframe after a reconnect (one a second), inference, the sink


def parameters() -> list:
    return [
        pytest.param(case, id=case.id, marks=() if case.id in REPRESENTATIVE else pytest.mark.slow) for case in matrix()
    ]


def skip_without_servers(case: Case) -> None:
    if case.link.startswith("rtsp") and not gstreamer_available():
        pytest.skip(MISSING_REASON)
    if case.link == "mqtt":
        pytest.importorskip("aiomqtt")
        if mosquitto_binary() is None:
            pytest.skip("needs the mosquitto broker")


@pytest.fixture(scope="module")
def small_centerface():
    return AutoModel.from_pretrained("centerface", input_size=(WIDTH, HEIGHT))


def test_matrix_when_built_covers_every_fault_on_every_link():
    cases = matrix()

    assert len(cases) == len({case.id for case in cases}) >= 12
    assert {case.link for case in cases} == {"rtsp-tcp", "rtsp-udp", "hls", "webhook", "mqtt"}
    assert REPRESENTATIVE <= {case.id for case in cases}


@pytest.mark.parametrize("case", parameters())
async def test_pipeline_when_a_fault_hits_a_link_recovers_and_loses_nothing(case, small_centerface, tmp_path: Path):
    skip_without_servers(case)
    async with running_servers(tmp_path) as servers:
        outcome = await run_case(case, servers, small_centerface)

    assert outcome.recovered, outcome
    assert outcome.lost == 0 and outcome.produced > 0, outcome
    assert outcome.recover_s is not None and outcome.recover_s <= RECOVERY_BOUND_S + FIRST_RESULT_SLACK_S, outcome
