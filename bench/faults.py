"""Faults: every fault of streamer.testing.FaultProxy on every link, once, against real servers on loopback.

The matrix (tests/faults.py, shared with tests/testing/test_fault_matrix.py): stall, freeze, cut,
cut with refusal, throttle, latency and corruption, each for 3 s (a cut is one blow), on RTSP over
TCP, HLS over HTTP, a webhook sink and an MQTT QoS 1 sink; cut, cut with refusal and stall on the
control connection of RTSP over UDP. A GStreamer RTSP server (run under the system Python), a live
HLS server, a webhook receiver and a mosquitto broker serve the cases; CenterFace at 160 x 96 runs
on 10 fps cameras. Sources retry with open_timeout_s = read_timeout_s = 2 and backoff 0.2 .. 1 s.

For each case: recovered (at least 10 results after the fault's end, produced for a source case,
produced and delivered for a sink case), seconds from the fault's end to the first of them, results
produced but never delivered (lost) and deliveries beyond the first per idempotency key (duplicates).
The last line printed is, in this exact form:

    faults=<n> recovered=<n> lost=<n> recover_p50_s=<x> recover_max_s=<y>

Run from the project root:  python bench/faults.py [--cases stall-rtsp-tcp cut-mqtt ...]
Progress goes to stderr, results to stdout. MQTT cases need `mosquitto`; RTSP cases GStreamer.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/faults.py` from the project root
    sys.path.insert(0, str(ROOT))

from tests.faults import RECOVERY_BOUND_S, Case, Outcome, matrix, load_model, run_case, running_servers  # noqa: E402
from tests.rtsp import MISSING_REASON, gstreamer_available  # noqa: E402
from tests.sinks.mosquitto import mosquitto_binary  # noqa: E402


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def runnable(cases: list[Case]) -> list[Case]:
    """The cases this machine has servers for (each one left out is said on stderr)."""
    kept = []
    for case in cases:
        if case.link.startswith("rtsp") and not gstreamer_available():
            progress(f"skipping {case.id}: {MISSING_REASON}")
        elif case.link == "mqtt" and mosquitto_binary() is None:
            progress(f"skipping {case.id}: needs the mosquitto broker")
        else:
            kept.append(case)
    return kept


async def run_all(cases: list[Case]) -> list[Outcome]:
    outcomes = []
    with tempfile.TemporaryDirectory() as directory:
        model = await load_model()
        async with running_servers(Path(directory)) as servers:
            for number, case in enumerate(cases, 1):
                started = time.monotonic()
                outcome = await run_case(case, servers, model)
                outcomes.append(outcome)
                progress(f"[{number}/{len(cases)}] {case.id}: {'recovered' if outcome.recovered else 'NOT recovered'} "
                         f"({time.monotonic() - started:.1f} s; {outcome.note})")
    return outcomes


def table(outcomes: list[Outcome]) -> str:
    header = f"{'fault':<11} {'link':<9} {'recovered':<9} {'recover_s':>9} {'produced':>8} {'lost':>5} {'dups':>5}  note"
    rows = [header, "-" * len(header)]
    for outcome in outcomes:
        recover = f"{outcome.recover_s:.2f}" if outcome.recover_s is not None else "-"
        rows.append(f"{outcome.case.fault:<11} {outcome.case.link:<9} {'yes' if outcome.recovered else 'NO':<9} "
                    f"{recover:>9} {outcome.produced:>8} {outcome.lost:>5} {outcome.duplicates:>5}  {outcome.note}")
    return "\n".join(rows)


def last_line(outcomes: list[Outcome]) -> str:
    times = [outcome.recover_s for outcome in outcomes if outcome.recovered and outcome.recover_s is not None]
    p50 = statistics.median(times) if times else float("nan")
    worst = max(times) if times else float("nan")
    recovered = sum(outcome.recovered for outcome in outcomes)
    lost = sum(outcome.lost for outcome in outcomes)
    return f"faults={len(outcomes)} recovered={recovered} lost={lost} recover_p50_s={p50:.2f} recover_max_s={worst:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="*", help="case ids such as stall-rtsp-tcp (default: the whole matrix)")
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    cases = [case for case in matrix() if not arguments.cases or case.id in arguments.cases]
    outcomes = anyio.run(run_all, runnable(cases))
    print(table(outcomes))
    slow = [o.case.id for o in outcomes if o.recover_s is not None and o.recover_s > RECOVERY_BOUND_S]
    print(f"\nrecovery bound (backoff_max_s + open_timeout_s): {RECOVERY_BOUND_S:.1f} s; over it: {', '.join(slow) or 'none'}")
    print(last_line(outcomes))


if __name__ == "__main__":
    main()
