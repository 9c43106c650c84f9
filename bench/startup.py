"""Startup: seconds from `streamer run` to its first result, on CPU.

Each run starts `python -m streamer run` as a fresh process on a tiny config (a generated 10-frame
160x96 H.264 clip, the model `--model`, default the embedded `centerface`, and a JSONL sink) and
measures wall time from the spawn to the first complete line in the JSONL file, and to the process's
exit. Runs share one model cache and one bytecode cache (`PYTHONPYCACHEPREFIX`, as an installed
package has its `.pyc` files even where PYTHONDONTWRITEBYTECODE is set) in a temporary work folder,
so the first run is the cold one (it compiles, and rewrites CenterFace's graph into the cache,
importing `onnx`); it is reported on its own and left out of the medians. For comparison, `python -c pass` (the interpreter alone) and `import streamer.cli` are
timed the same way.

The last line printed is, in this exact form:

    startup_first_result_s_p50=<a> startup_first_result_s_max=<b> startup_cold_s=<c> startup_exit_s_p50=<d> runs=<n>

Target (issue #14): startup_first_result_s_p50 <= 1.5 on CPU.

Run from the project root:  python bench/startup.py [--runs 7] [--model centerface]
Progress goes to stderr, results to stdout.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/startup.py` from the project root
    sys.path.insert(0, str(ROOT))

from tests.media import write_clip  # noqa: E402

POLL_S = 0.002
RUN_TIMEOUT_S = 120.0
CONFIG = """
[model]
id = "{model}"

[[sources]]
id = "clip"
type = "file"
path = "clip.mp4"

[[sinks]]
type = "jsonl"
path = "out.jsonl"
"""


@dataclass(frozen=True)
class Run:
    first_result_s: float
    exit_s: float


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="streamer-startup-") as work:
        folder = Path(work)
        write_clip(folder / "clip.mp4", frames=10)
        (folder / "run.toml").write_text(CONFIG.format(model=args.model))
        environment = run_environment(folder)
        baselines = {name: median_exit_s(code, folder, environment, args.runs) for name, code in BASELINES.items()}
        runs = [timed_run(folder, environment, index) for index in range(args.runs + 1)]
    print_table(args.model, baselines, runs)
    print(last_line(runs))


BASELINES = {"python -c pass": "pass", "import streamer.cli": "import streamer.cli"}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7, help="warm runs after the cold one (default 7)")
    parser.add_argument("--model", default="centerface", help="a model id or a path to an .onnx file")
    return parser.parse_args()


def run_environment(folder: Path) -> dict[str, str]:
    """The model cache in `folder`, and bytecode kept (in `folder` too) as an installed package has it."""
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    return {**environment, "STREAMER_CACHE_DIR": str(folder / "cache"), "PYTHONPYCACHEPREFIX": str(folder / "pyc")}


def median_exit_s(code: str, cwd: Path, environment: dict[str, str], runs: int) -> float:
    """Median wall time of `python -c code` from spawn to exit."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], cwd=cwd, env=environment, check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def timed_run(folder: Path, environment: dict[str, str], index: int) -> Run:
    """One `streamer run`: spawn -> first JSONL line, and spawn -> exit."""
    out = folder / "out.jsonl"
    out.unlink(missing_ok=True)
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "streamer", "run", "run.toml"], cwd=folder, env=environment,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    first = wait_for_first_line(out, process, started)
    _, stderr = process.communicate(timeout=RUN_TIMEOUT_S)
    exited = time.perf_counter() - started
    if process.returncode != 0:
        sys.exit(f"run {index}: streamer exited {process.returncode}:\n{stderr}")
    print(f"run {index}: first result {first:.3f} s, exit {exited:.3f} s", file=sys.stderr)
    return Run(first, exited)


def wait_for_first_line(out: Path, process: subprocess.Popen, started: float) -> float:
    while time.perf_counter() - started < RUN_TIMEOUT_S:
        if out.exists() and b"\n" in out.read_bytes()[:65536]:
            return time.perf_counter() - started
        if process.poll() is not None and not (out.exists() and b"\n" in out.read_bytes()[:65536]):
            sys.exit(f"streamer exited {process.returncode} before any result:\n{process.stderr.read()}")
        time.sleep(POLL_S)
    process.kill()
    sys.exit(f"no result within {RUN_TIMEOUT_S:.0f} s")


def print_table(model: str, baselines: dict[str, float], runs: list[Run]) -> None:
    cold, warm = runs[0], runs[1:]
    print(f"model {model}, {os.cpu_count()} cpus, {len(warm)} warm runs after one cold run")
    print(f"{'':<26}{'first result s':>16}{'exit s':>10}")
    for name, seconds in baselines.items():
        print(f"{name:<26}{'':>16}{seconds:>10.3f}")
    print(f"{'cold (empty cache)':<26}{cold.first_result_s:>16.3f}{cold.exit_s:>10.3f}")
    for label, pick in (("warm p50", statistics.median), ("warm max", max)):
        first, exited = pick(r.first_result_s for r in warm), pick(r.exit_s for r in warm)
        print(f"{label:<26}{first:>16.3f}{exited:>10.3f}")


def last_line(runs: list[Run]) -> str:
    warm = runs[1:]
    return (
        f"startup_first_result_s_p50={statistics.median(r.first_result_s for r in warm):.3f} "
        f"startup_first_result_s_max={max(r.first_result_s for r in warm):.3f} "
        f"startup_cold_s={runs[0].first_result_s:.3f} "
        f"startup_exit_s_p50={statistics.median(r.exit_s for r in warm):.3f} runs={len(warm)}"
    )


if __name__ == "__main__":
    main()
