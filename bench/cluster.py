"""Fleet failover and overhead, on a private Ray on loopback (`streamer cluster run`'s machinery).

    python bench/cluster.py [--kills 4] [--cameras 6] [--repeats 8]

1. Kills under load: `--cameras` lavfi cameras over 3 workers, results to a webhook receiver on
   127.0.0.1 and to each slot's JSONL files. `--kills` times, the busiest worker's process is
   SIGKILLed; reassign is kill -> the first result of each of its cameras captured after the kill
   (so made by its new worker) reaching the receiver. After the run, lost = results in the workers'
   JSONL files (what the fleet made) that never reached the receiver; duplicates = deliveries
   beyond the first, by idempotency key (at-least-once: the receiver dedupes by it).
2. Overhead: `streamer run` on two file jobs (checkpointed, as the fleet checkpoints them) vs the
   same jobs in a fleet of one worker holding the same CPUs, as interleaved pairs (S F, F S, ...). Frames per second and frames per CPU-second
   are shown, over the span the frames were processed in; the overhead is the median of the pairs'
   (1 - worker / streamer run) in frames per CPU-second of the process that holds the CPUs (the
   frames/s it reaches holding them), in percent; the same with the coordinator's and Ray's own
   processes added (on a real cluster they run outside the worker's CPUs) is printed beside it. On
   a machine shared with other jobs, wall-clock frames/s mostly measures the other jobs.

Prints a table per part, and as its LAST line:
    kills=<n> reassign_p50_s=<x> reassign_max_s=<y> lost=<n> duplicates=<n> overhead_pct=<z>
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/cluster.py` from the project root
    sys.path.insert(0, str(ROOT))

from streamer.cluster.runtime import import_ray  # noqa: E402  (sets Ray's loopback switch before ray loads)

import anyio  # noqa: E402
from aiohttp import web  # noqa: E402

from streamer.cluster import runtime  # noqa: E402
from streamer.cluster.run import open_fleet  # noqa: E402
from streamer.config import load_config  # noqa: E402
from streamer.config.schema import ClusterConfig  # noqa: E402
from tests.media import write_clip  # noqa: E402

WORKERS = 3
GRAPH = "testsrc2=size=160x96:rate=5"
JOB_FRAMES, JOB_SIZE = 300, (320, 240)
MOVE_TIMEOUT_S = 30.0
SETTLE_S = 3.0  # after a killed worker is back, before the next kill
CPU_SAMPLE_S = 0.25


class Receiver:
    """The webhook endpoint: every delivery, with when it arrived."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[float, dict[str, Any]]] = []
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def __aenter__(self) -> Receiver:
        app = web.Application(client_max_size=64 << 20)
        app.router.add_post("/hook", self._take)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _take(self, request: web.Request) -> web.Response:
        now = time.time()
        self.deliveries += [(now, result) for result in json.loads(await request.read())]
        return web.Response(text="ok")

    def first_after(self, source: str, captured_after: float) -> float | None:
        return next((at for at, r in self.deliveries if r["source"] == source and r["wall_time"] > captured_after), None)


def identity(result: dict[str, Any]) -> tuple[str, int, float]:
    return result["source"], result["frame_index"], result["wall_time"]


def fleet_config(state_dir: Path, sources: list[dict[str, Any]], sinks: list[dict[str, Any]], **cluster: Any) -> Any:
    return load_config({
        "sources": sources,
        "sinks": sinks,
        "batching": {"max_batch_size": 4, "max_wait_ms": 10},
        "run": {"drain_timeout_s": 10},
        "cluster": {"state_dir": str(state_dir), **cluster},  # pings and timeouts as configured by default
    })


# ---- part 1: kills under load --------------------------------------------------------------------


async def kills(work: Path, cameras: int, count: int) -> dict[str, Any]:
    state = work / "kills"
    rows, reassign = [], []
    async with Receiver() as receiver:
        sources = [{"type": "lavfi", "id": f"cam{i}", "graph": GRAPH} for i in range(cameras)]
        sinks = [{"type": "webhook", "url": receiver.url, "batch_size": 8, "batch_ms": 20, "backoff_s": 0.05, "backoff_max_s": 0.5},
                 {"type": "jsonl", "path": "results.jsonl"}]
        config = fleet_config(state, sources, sinks, workers=WORKERS, cpus_per_worker=2 / WORKERS)
        async with open_fleet(config) as fleet:
            coordinator = fleet.coordinator
            await _until(lambda: all(p.state == "running" for p in coordinator.placements.values()), 60)
            await anyio.sleep(SETTLE_S)
            for kill in range(count):
                load = coordinator.load()
                slot = coordinator.slots[max(load, key=lambda index: (load[index], -index))]
                moved = [source_id for source_id, p in coordinator.placements.items() if p.slot == slot.index]
                first_start = slot.start
                os.kill(slot.report["pid"], signal.SIGKILL)
                killed_at = time.time()
                await _until(lambda: all(receiver.first_after(s, killed_at) for s in moved), MOVE_TIMEOUT_S)
                seconds = [receiver.first_after(s, killed_at) - killed_at for s in moved]  # type: ignore[operator]
                reassign += seconds
                await _until(lambda: slot.up and slot.start != first_start, 60)
                detected = (slot.lost_at or killed_at) - killed_at
                rows.append((kill + 1, slot.index, len(moved), detected, coordinator.reassign_seconds[-1], max(seconds)))
                await anyio.sleep(SETTLE_S)
        await anyio.sleep(2.0)  # the restarted slots' spool replays
    produced = {identity(json.loads(line)) for path in state.glob("slot-*/*.jsonl") for line in path.read_text().splitlines()}
    keys = [result["idempotency_key"] for _, result in receiver.deliveries]
    delivered = {identity(result) for _, result in receiver.deliveries}
    print(f"{'kill':>4} {'worker':>6} {'cameras':>7} {'lost after s':>12} {'placed in s':>11} {'reassign s':>10}")
    for kill, slot_index, moved_count, detected, placed, first in rows:
        print(f"{kill:>4} {slot_index:>6} {moved_count:>7} {detected:>12.2f} {placed:>11.2f} {first:>10.2f}")
    print(f"results made {len(produced)}, delivered {len(keys)} ({len(set(keys))} unique keys)\n")
    return {"kills": len(rows), "reassign": reassign, "lost": len(produced - delivered), "duplicates": len(keys) - len(set(keys))}


async def _until(condition: Any, timeout: float) -> None:
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.05)


# ---- part 2: overhead ------------------------------------------------------------------------------


def jobs(work: Path) -> list[dict[str, Any]]:
    clips = []
    for name in ("a", "b"):
        path = work / f"{name}.mp4"
        if not path.exists():
            write_clip(path, frames=JOB_FRAMES, width=JOB_SIZE[0], height=JOB_SIZE[1])
        clips.append({"type": "file", "id": name, "path": str(path)})
    return clips


class CpuMeter:
    """CPU seconds used by a process and its descendants, sampled in a thread, so that the window in
    which the frames were processed (startup and model loading left out) can be cut out afterwards."""

    def __init__(self, pid: int, descendants: bool = True) -> None:
        import psutil

        self.root = psutil.Process(pid)
        self.descendants = descendants
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        import psutil

        while not self._stop.wait(CPU_SAMPLE_S):
            total, now = 0.0, time.time()
            for process in [self.root, *(self.root.children(recursive=True) if self.descendants else [])]:
                try:
                    times = process.cpu_times()
                except psutil.Error:
                    continue
                total += times.user + times.system
            if self.root.pid == os.getpid():
                total -= time.thread_time()  # this thread's own reading is no part of what is measured
            self.samples.append((now, total))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def at(self, moment: float) -> float:
        """CPU seconds used by `moment` (linear between the samples around it)."""
        earlier = [sample for sample in self.samples if sample[0] <= moment] or self.samples[:1]
        later = [sample for sample in self.samples if sample[0] >= moment] or self.samples[-1:]
        (t0, c0), (t1, c1) = earlier[-1], later[0]
        return c0 if t1 <= t0 else c0 + (c1 - c0) * (moment - t0) / (t1 - t0)


def rates(paths: list[Path], *meters: CpuMeter) -> tuple[float, ...]:
    """Frames per second over the span of their capture times (files are read as fast as the model
    takes them), then frames per CPU-second of each meter over that span (from its first sample on)."""
    times = sorted(json.loads(line)["wall_time"] for path in paths for line in path.read_text().splitlines())
    first, last = max([times[0], *(meter.samples[0][0] for meter in meters)]), times[-1]
    frames = sum(1 for moment in times if moment >= first) - 1
    return (frames / (last - first), *(frames / (meter.at(last) - meter.at(first)) for meter in meters))


def single(work: Path, run: int) -> tuple[float, float]:
    out = work / f"single-{run}.jsonl"
    config = work / f"single-{run}.toml"
    tables = "".join(f'[[sources]]\ntype = "file"\nid = "{s["id"]}"\npath = "{s["path"]}"\n\n' for s in jobs(work))
    # The fleet checkpoints its file jobs (every [run] checkpoint_interval_s): so does this run.
    run = f'[run]\ncheckpoint = "{work / f"single-{run}.checkpoint.json"}"\n\n'
    config.write_text(tables + run + f'[batching]\nmax_batch_size = 4\nmax_wait_ms = 10\n\n[[sinks]]\ntype = "jsonl"\npath = "{out}"\n')
    process = subprocess.Popen([sys.executable, "-m", "streamer", "run", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    meter = CpuMeter(process.pid)
    if process.wait() != 0:
        raise RuntimeError(f"streamer run {config} exited {process.returncode}")
    meter.stop()
    return rates([out], meter)


async def fleet_rates(work: Path, run: int) -> tuple[float, float]:
    """The same jobs in a one-worker fleet; its CPU is this driver's (the coordinator) and every
    process below it: Ray's GCS and raylet, the worker."""
    state = work / f"fleet-{run}"
    config = fleet_config(state, jobs(work), [{"type": "jsonl", "path": "results.jsonl"}],
                          workers=1, cpus_per_worker=float(os.cpu_count() or 1))
    everything = CpuMeter(os.getpid())
    async with open_fleet(config) as fleet:
        worker = CpuMeter(fleet.coordinator.slots[0].report["pid"], descendants=False)
        await _until(lambda: all(p.state == "ended" for p in fleet.coordinator.placements.values()), 300)
        worker.stop()
        everything.stop()
    return rates(list(state.glob("slot-0/*.jsonl")), worker, everything)


async def overhead(work: Path, repeats: int) -> float:
    """Interleaved pairs (S F, F S, ...). The overhead is the median of (1 - worker / streamer run) in
    frames per CPU-second of the process holding the CPUs (the worker; `streamer run` itself): the
    frames/s each reaches holding its CPUs, which the other jobs on a shared machine disturb far
    less than wall-clock frames/s. The fleet's whole cost (worker, coordinator, Ray's own
    processes, which on a real cluster run outside the worker's CPUs) is shown beside it."""
    print(f"{'pair':>4} {'run fps':>7} {'fleet fps':>9} {'run f/cpu-s':>11} {'worker f/cpu-s':>14} {'fleet+ray f/cpu-s':>17}"
          f" {'overhead %':>10} {'with ray %':>10}")
    overheads, whole = [], []
    for run in range(repeats):
        if run % 2 == 0:
            alone = await anyio.to_thread.run_sync(single, work, run)
            fleet = await fleet_rates(work, run)
        else:
            fleet = await fleet_rates(work, run)
            alone = await anyio.to_thread.run_sync(single, work, run)
        overheads.append(100 * (1 - fleet[1] / alone[1]))
        whole.append(100 * (1 - fleet[2] / alone[1]))
        print(f"{run + 1:>4} {alone[0]:>7.1f} {fleet[0]:>9.1f} {alone[1]:>11.1f} {fleet[1]:>14.1f} {fleet[2]:>17.1f}"
              f" {overheads[-1]:>10.1f} {whole[-1]:>10.1f}")
    print(f"median overhead: {statistics.median(overheads):.1f} % in the worker, {statistics.median(whole):.1f} % with the"
          " coordinator and Ray's processes\n")
    return statistics.median(overheads)


async def main(args: argparse.Namespace) -> None:
    cpus = max(WORKERS, os.cpu_count() or 1)
    runtime.start(ClusterConfig(workers=cpus, cpus_per_worker=1.0), log_to_driver=False)
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as folder:
        work = Path(folder)
        started = time.monotonic()
        killed = await kills(work, args.cameras, args.kills)
        overhead_pct = await overhead(work, args.repeats)
    import_ray().shutdown()
    reassign = killed["reassign"]
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; {time.monotonic() - started:.0f} s")
    print(f"kills={killed['kills']} reassign_p50_s={statistics.median(reassign):.2f} reassign_max_s={max(reassign):.2f}"
          f" lost={killed['lost']} duplicates={killed['duplicates']} overhead_pct={overhead_pct:.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=4)
    parser.add_argument("--cameras", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=8, help="interleaved pairs for the overhead")
    anyio.run(main, parser.parse_args())
