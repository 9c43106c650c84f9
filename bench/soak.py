"""Soak: does a long `streamer run` keep its memory and open file descriptors steady?

One run:

setup     two H.264 clips encoded with PyAV (640x360, 15 fps, 10 s and 7 s of a zoom over the
          astronaut photo, so the model finds a face) and a config with four sources: the clips as
          `file` sources with `loop = true` and `realtime = true`, and two lavfi
          `testsrc2=size=640x360:rate=15` patterns; the default model (CenterFace, its settings left
          at their defaults); a JSONL sink rotated every `--rotate-mb` MB keeping 2 rotated files
          (so 30 minutes cannot fill the disk), and a webhook sink (batch_size `--webhook-batch`,
          batch_ms 200) posting to a receiver (bench/receiver.py: aiohttp on 127.0.0.1, an
          ephemeral port, in a thread of this process). Everything lives in a temporary folder.
child     `python -m streamer --log-level warning --log-format json run <config>` (the CLI) in a
          child process of its own session, so the figures are streamer's alone, not this
          harness's or the receiver's. The clock starts when the receiver gets the first result
          (model loaded, every task running) and runs for `--minutes` (fractions allowed).
samples   every `--interval` s (default 10): the child's VmRSS and RssAnon (/proc/<pid>/status),
          its open fds (the entries of /proc/<pid>/fd, also sorted by kind), its threads, the
          distinct results the receiver got (frames), the lines in the JSONL files (rotated
          ones included) and the bytes the sinks keep on disk (JSONL files and the webhook
          spool: both must stay bounded); a progress line on stderr each time.
stop      SIGTERM at the end: streamer must exit 0 within `[run] drain_timeout_s` (10 s) + 5 s.
          However this harness ends (Ctrl-C, SIGTERM, SIGHUP, an error) it stops streamer first;
          if it is killed outright, `setpriv --pdeathsig KILL` (where installed) takes streamer
          down with it.

The four sources offer 60 frames/s, more than two cores run CenterFace at, as cameras would:
the lavfi sources (policy `latest`) drop what the model cannot take, the files (policy `block`)
fall behind their clock. So both cores stay busy, and frames/s follow whatever else the machine
runs; memory and fds should not.

rss_growth_pct = 100 * (end - baseline) / baseline, where baseline is the median VmRSS of the
first 3 samples taken after the warm-up and end the median of the last 3. Memory grows at start
while allocator arenas, ONNX Runtime's buffers, PyAV's frame pools and the queues fill; a leak is
growth after that, so the warm-up (`--warmup`, default: the first 2 minutes or 20% of the run,
whichever is shorter) is left out, and medians keep one odd sample from deciding. fd_growth is
the same for the fd count (end median - baseline median; 0 means no fd is gained or lost). With
fewer than 6 samples after the warm-up each median takes fewer samples (and the figures say
little). The least-squares slope of RSS after the warm-up (MB per minute) is printed as well.

frames are the distinct results the receiver got (by idempotency key); once streamer has exited,
they must equal the JSONL sink's `written` count in streamer's summary within one webhook batch.
errors is the sum of: the child's log records at level error or critical, tracebacks and
`error:` lines on its stderr outside the log records, requests the receiver could not read, an
early exit, a non-zero exit or none within the deadline, a JSONL/webhook mismatch beyond one
batch, a sink that dropped results, and a source with no new result in the last quarter of the
run. Each one is listed. The target (issue #7): rss_growth_pct < 5 and fd_growth == 0 over 30
minutes. The last line printed is, exactly:

    minutes=<m> frames=<n> rss_growth_pct=<g> fd_growth=<f> errors=<e>

Run from the project root:  python bench/soak.py [--minutes 30] [--interval 10] [--keep]
Progress goes to stderr, results to stdout.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/soak.py` from the project root
    sys.path.insert(0, str(ROOT))

from bench.receiver import Counts, Receiver
from bench.throughput import CRF, add_grain, zoomed

WIDTH, HEIGHT, FPS = 640, 360, 15
CLIP_SECONDS = {"file0": 10, "file1": 7}  # different lengths, so the two loops never line up
LAVFI = {"lavfi0": f"testsrc2=size={WIDTH}x{HEIGHT}:rate={FPS}", "lavfi1": f"testsrc2=size={WIDTH}x{HEIGHT}:rate={FPS}"}
WEBHOOK_BATCH_MS = 200
KEEP_ROTATED = 2
DRAIN_TIMEOUT_S = 10.0  # [run] drain_timeout_s
STOP_GRACE_S = 5.0  # on top of it: interpreter teardown
FIRST_RESULT_TIMEOUT_S = 180.0
WARMUP_MAX_S, WARMUP_SHARE = 120.0, 0.2
WINDOW = 3  # samples per median (baseline and end)
STALL_SHARE = 0.25  # a source with no new result in this last share of the run is reported
POLL_S = 0.25


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def clock(seconds: float) -> str:
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


# ---- setup: clips and the config -------------------------------------------------------------


def write_clip(path: Path, frames: int) -> None:
    """H.264 at WIDTH x HEIGHT, FPS: the astronaut zoom from throughput.py, with grain."""
    from skimage import data

    photo, rng = data.astronaut(), np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": str(CRF)}
        for index in range(frames):
            image = add_grain(zoomed(photo, index, WIDTH, HEIGHT), rng)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))


def toml_table(header: str, values: dict[str, Any]) -> str:
    """A TOML table of strings, numbers and booleans (JSON strings are valid TOML basic strings)."""
    lines = [header] + [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Settings:
    minutes: float
    interval: float
    warmup: float
    webhook_batch: int
    rotate_mb: float
    keep: bool

    @property
    def seconds(self) -> float:
        return 60 * self.minutes


def write_config(work: Path, clips: dict[str, Path], url: str, settings: Settings) -> Path:
    sources: list[dict[str, Any]] = [
        *({"id": name, "type": "file", "path": str(path), "loop": True, "realtime": True} for name, path in clips.items()),
        *({"id": name, "type": "lavfi", "graph": graph} for name, graph in LAVFI.items()),
    ]
    jsonl = {"type": "jsonl", "path": str(work / "out" / "results.jsonl"),
             "rotate_bytes": int(settings.rotate_mb * 1e6), "keep": KEEP_ROTATED}
    webhook = {"type": "webhook", "url": url, "batch_size": settings.webhook_batch, "batch_ms": WEBHOOK_BATCH_MS,
               "spool_dir": str(work / "spool")}
    parts = [toml_table("[run]", {"drain_timeout_s": DRAIN_TIMEOUT_S})]
    parts += [toml_table("[[sources]]", source) for source in sources]
    parts += [toml_table("[[sinks]]", sink) for sink in (jsonl, webhook)]
    path = work / "soak.toml"
    path.write_text("\n".join(parts))
    return path


def prepare(work: Path, url: str, settings: Settings) -> Path:
    from streamer.config import load_config  # the same check as `streamer validate`

    clips = {}
    for name, seconds in CLIP_SECONDS.items():
        clips[name] = work / f"{name}.mp4"
        write_clip(clips[name], seconds * FPS)
    config = write_config(work, clips, url, settings)
    load_config(config)
    return config


# ---- the child: streamer run, its stderr and /proc -------------------------------------------


@dataclass
class ChildLog:
    """The child's stderr (a file), read as it grows: JSON log records and any other line."""

    path: Path
    offset: int = 0
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    other: list[str] = field(default_factory=list)

    def read_new(self) -> list[str]:
        """Parse the complete lines written since the last call; returns the new errors."""
        try:
            with open(self.path, "rb") as file:
                file.seek(self.offset)
                chunk = file.read()
        except FileNotFoundError:
            return []
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self.offset += len(complete)
        before = len(self.errors)
        for line in complete.decode("utf-8", errors="replace").splitlines():
            self._take(line)
        return self.errors[before:]

    def _take(self, line: str) -> None:
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict) or "level" not in record:
            self.other.append(line)
            if line.startswith(("Traceback", "error:")) or "[E:onnxruntime" in line:
                self.errors.append(line.strip())
            return
        message = f"{record.get('logger')}: {record.get('message')}"
        if record["level"] in ("error", "critical"):
            detail = str(record.get("error", "")).strip().splitlines()
            self.errors.append(message + (f" ({detail[-1]})" if detail else ""))
        elif record["level"] == "warning":
            self.warnings.append(message)


def read_status(pid: int) -> dict[str, str]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def fd_kinds(pid: int, work: Path) -> Counter[str]:
    """Open fds by what they point at: socket, pipe, anon_inode:<kind>, or the file's path."""
    kinds: Counter[str] = Counter()
    folder = Path(f"/proc/{pid}/fd")
    for entry in os.listdir(folder):
        try:
            target = os.readlink(folder / entry)
        except FileNotFoundError:  # closed while we looked
            continue
        if target.startswith(("socket:", "pipe:")):
            target = target.split(":")[0]
        elif target.startswith("anon_inode:"):
            target = target.replace("[", "").replace("]", "")
        elif target.startswith(str(work)):  # spool segments roll over: one name for them all
            target = re.sub(r"\d{20}\.seg$", "<n>.seg", "<work>" + target[len(str(work)) :])
        kinds[target] += 1
    return kinds


class Child:
    """`streamer run CONFIG` as a child process in its own session; stdout and stderr go to files."""

    def __init__(self, config: Path, work: Path) -> None:
        self.config, self.work = config, work
        self.stdout, self.stderr = work / "streamer.stdout", work / "streamer.stderr"
        self.log = ChildLog(self.stderr)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def command(self) -> list[str]:
        streamer = [sys.executable, "-m", "streamer", "--log-level", "warning", "--log-format", "json", "run"]
        # setpriv execs streamer in its place (same pid) after asking the kernel to kill it if we die
        guard = ["setpriv", "--pdeathsig", "KILL"] if shutil.which("setpriv") else []
        return [*guard, *streamer, str(self.config)]

    def start(self) -> None:
        with open(self.stdout, "wb") as out, open(self.stderr, "wb") as err:
            # a session of its own: a Ctrl-C at the terminal reaches only us, and we stop it once
            self.process = subprocess.Popen(self.command(), cwd=ROOT, stdout=out, stderr=err,
                                            stdin=subprocess.DEVNULL, start_new_session=True)

    def exit_code(self) -> int | None:
        return self.process.poll() if self.process is not None else None

    def stop(self, deadline_s: float) -> tuple[int | None, float]:
        """SIGTERM, then wait up to `deadline_s`: (exit code or None if it had to be killed, seconds)."""
        assert self.process is not None
        start = time.monotonic()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code: int | None = self.process.wait(deadline_s)
        except subprocess.TimeoutExpired:
            self.kill()
            code = None
        return code, time.monotonic() - start

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def summary(self) -> str:
        return self.stdout.read_text(errors="replace").strip() if self.stdout.exists() else ""


@contextmanager
def always_stopped(child: Child) -> Iterator[Child]:
    """However the block ends (Ctrl-C, SIGTERM, an error), the child is gone after it."""
    try:
        yield child
    finally:
        try:
            if child.exit_code() is None and child.process is not None:
                child.stop(DRAIN_TIMEOUT_S + STOP_GRACE_S)
        finally:
            child.kill()  # interrupted while waiting, or it ignored SIGTERM


# ---- samples ---------------------------------------------------------------------------------


class JsonlLines:
    """Lines in the JSONL sink's file and its rotated files; a rotated file is counted once (it no
    longer changes), so the total stays right after `keep` deletes it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rotated: dict[str, int] = {}

    def count(self) -> int:
        for rotated in self.path.parent.glob(f"{self.path.stem}.*{self.path.suffix}"):
            if rotated.name not in self.rotated:
                lines = newlines(rotated)
                if lines is not None:
                    self.rotated[rotated.name] = lines
        return sum(self.rotated.values()) + (newlines(self.path) or 0)


def newlines(path: Path) -> int | None:
    try:
        with open(path, "rb") as file:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: file.read(1 << 20), b""))
    except FileNotFoundError:
        return None


@dataclass(frozen=True)
class Sample:
    t: float  # seconds since the first result
    frames: int  # distinct results the receiver got
    jsonl: int  # lines in the JSONL files
    rss_kb: int
    anon_kb: int
    fds: int
    threads: int
    disk_bytes: int  # the sinks' files: JSONL (rotated ones included) and the webhook spool
    fd_kinds: Counter[str]
    by_source: dict[str, int]

    @property
    def rss_mb(self) -> float:
        return self.rss_kb / 1024


def take_sample(t: float, child: Child, counts: Counts, jsonl: JsonlLines) -> Sample:
    status = read_status(child.pid)
    kinds = fd_kinds(child.pid, child.work)
    disk = folder_bytes(child.work / "out") + folder_bytes(child.work / "spool")
    return Sample(
        t, counts.unique, jsonl.count(), kb(status["VmRSS"]), kb(status.get("RssAnon", "0 kB")),
        sum(kinds.values()), int(status["Threads"]), disk, kinds, counts.by_source,
    )


def folder_bytes(folder: Path) -> int:
    total = 0
    for path in folder.glob("*"):
        try:
            total += path.stat().st_size
        except FileNotFoundError:  # rotated away or retired while we looked
            pass
    return total


def kb(value: str) -> int:
    return int(value.split()[0])


# ---- the run ---------------------------------------------------------------------------------


@dataclass
class Outcome:
    settings: Settings
    samples: list[Sample] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    counts: Counts | None = None
    exit_code: int | None = None
    stop_s: float = math.nan
    summary: str = ""
    jsonl_lines: int = 0
    warnings: list[str] = field(default_factory=list)
    other_stderr: list[str] = field(default_factory=list)


def wait_for_first_result(child: Child, receiver: Receiver) -> bool:
    deadline = time.monotonic() + FIRST_RESULT_TIMEOUT_S
    while time.monotonic() < deadline:
        if receiver.counts().unique:
            return True
        if child.exit_code() is not None:
            return False
        time.sleep(0.1)
    return False


def sample_times(seconds: float, interval: float) -> list[float]:
    """Every `interval` s from the first result, and the run's end."""
    times = [interval * i for i in range(1, int(seconds / interval + 1e-9) + 1)]
    return times if times and times[-1] >= seconds - 1e-6 else [*times, seconds]


def soak(child: Child, receiver: Receiver, jsonl: JsonlLines, outcome: Outcome) -> None:
    """Sample every interval until the run's time is up or the child exits early."""
    settings, start = outcome.settings, time.monotonic()
    for due in sample_times(settings.seconds, settings.interval):
        while (elapsed := time.monotonic() - start) < due:
            if child.exit_code() is not None:
                outcome.problems.append(f"streamer exited early with code {child.exit_code()} after {clock(elapsed)}")
                return
            time.sleep(min(POLL_S, due - elapsed))
        for error in child.log.read_new():
            progress(f"streamer error: {error}")
        try:
            sample = take_sample(due, child, receiver.counts(), jsonl)
        except (OSError, KeyError):  # it just exited (a zombie has no VmRSS): reported below
            continue
        outcome.samples.append(sample)
        progress(describe_sample(sample, outcome.samples, settings))


def describe_sample(sample: Sample, samples: list[Sample], settings: Settings) -> str:
    return (f"soak {clock(sample.t)}/{clock(settings.seconds)}  frames {sample.frames} "
            f"({fps(samples, len(samples) - 1):.1f} fps)  jsonl {sample.jsonl}  rss {sample.rss_mb:.1f} MB  "
            f"fds {sample.fds}  threads {sample.threads}")


def fps(samples: list[Sample], index: int) -> float:
    before = samples[index - 1] if index else None
    frames = samples[index].frames - (before.frames if before else 0)
    seconds = samples[index].t - (before.t if before else 0.0)
    return frames / seconds if seconds > 0 else math.nan


def finish(child: Child, receiver: Receiver, jsonl: JsonlLines, outcome: Outcome) -> None:
    """Stop the child, then collect what it and the receiver say."""
    deadline = DRAIN_TIMEOUT_S + STOP_GRACE_S
    if child.exit_code() is None:
        progress("stopping streamer (SIGTERM) ...")
        outcome.exit_code, outcome.stop_s = child.stop(deadline)
        if outcome.exit_code is None:
            outcome.problems.append(f"streamer did not exit within {deadline:g} s of SIGTERM (killed)")
        elif outcome.exit_code != 0:
            outcome.problems.append(f"streamer exited with code {outcome.exit_code} after SIGTERM")
    else:
        outcome.exit_code = child.exit_code()
        if not any("exited early" in problem for problem in outcome.problems):
            outcome.problems.append(f"streamer had already exited with code {outcome.exit_code}")
    child.log.read_new()
    outcome.counts = receiver.counts()
    outcome.summary = child.summary()
    outcome.jsonl_lines = jsonl.count()
    outcome.warnings, outcome.other_stderr = child.log.warnings, child.log.other
    outcome.problems += [f"streamer logged: {error}" for error in child.log.errors]
    outcome.problems += [f"receiver: {reason}" for reason in receiver.failure_reasons]
    outcome.problems += delivery_problems(outcome)
    outcome.problems += stalled_sources(outcome)


def run(settings: Settings, work: Path) -> Outcome:
    outcome = Outcome(settings)
    with Receiver() as receiver:
        progress(f"encoding clips and writing the config in {work} ...")
        config = prepare(work, receiver.url, settings)
        jsonl = JsonlLines(work / "out" / "results.jsonl")
        with always_stopped(Child(config, work)) as child:
            child.start()
            progress(f"streamer run started (pid {child.pid}); waiting for the first result ...")
            if not wait_for_first_result(child, receiver):
                outcome.problems.append(f"no result within {FIRST_RESULT_TIMEOUT_S:g} s "
                                        f"(streamer exit code {child.exit_code()})")
            else:
                progress(f"first result in; soaking for {clock(settings.seconds)} "
                         f"(warm-up {settings.warmup:g} s, a sample every {settings.interval:g} s)")
                soak(child, receiver, jsonl, outcome)
            finish(child, receiver, jsonl, outcome)
    return outcome


# ---- analysis --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Growth:
    """Baseline (first samples after warm-up) against end (last samples), by medians."""

    base: list[Sample]
    end: list[Sample]

    @property
    def valid(self) -> bool:
        return bool(self.base and self.end)

    @property
    def rss_base_mb(self) -> float:
        return statistics.median(s.rss_mb for s in self.base) if self.valid else math.nan

    @property
    def rss_end_mb(self) -> float:
        return statistics.median(s.rss_mb for s in self.end) if self.valid else math.nan

    @property
    def rss_pct(self) -> float:
        return 100 * (self.rss_end_mb - self.rss_base_mb) / self.rss_base_mb if self.valid else math.nan

    @property
    def fd_base(self) -> int:
        return statistics.median_low(s.fds for s in self.base)

    @property
    def fd_end(self) -> int:
        return statistics.median_low(s.fds for s in self.end)

    @property
    def fd_growth(self) -> int | None:
        return self.fd_end - self.fd_base if self.valid else None


def after_warmup(outcome: Outcome) -> list[Sample]:
    return [s for s in outcome.samples if s.t >= outcome.settings.warmup]


def growth(outcome: Outcome) -> Growth:
    steady = after_warmup(outcome)
    k = min(WINDOW, len(steady) // 2)
    return Growth(steady[:k], steady[-k:] if k else [])


def rss_slope_mb_per_min(samples: list[Sample]) -> float:
    if len(samples) < 2:
        return math.nan
    t = np.array([s.t for s in samples])
    rss = np.array([s.rss_mb for s in samples])
    return float(60 * np.polyfit(t, rss, 1)[0])


def summary_counts(summary: str, kind: str) -> tuple[int, int] | None:
    """(written, dropped) of the sink of this kind in streamer's summary, or None."""
    match = re.search(rf"^output: {kind} .*\((\d+) written, (\d+) dropped\)$", summary, re.MULTILINE)
    return (int(match[1]), int(match[2])) if match else None


def delivery_problems(outcome: Outcome) -> list[str]:
    problems, batch = [], outcome.settings.webhook_batch
    assert outcome.counts is not None
    jsonl, webhook = summary_counts(outcome.summary, "jsonl"), summary_counts(outcome.summary, "webhook")
    for kind, counts in (("jsonl", jsonl), ("webhook", webhook)):
        if counts is not None and counts[1]:
            problems.append(f"the {kind} sink dropped {counts[1]} results")
    if jsonl is None:
        return problems + ["streamer printed no summary with the jsonl sink's count"]
    if abs(jsonl[0] - outcome.counts.unique) > batch:
        problems.append(f"the jsonl sink wrote {jsonl[0]} results but the receiver got {outcome.counts.unique} "
                        f"(more than one batch of {batch} apart)")
    if outcome.jsonl_lines != jsonl[0]:
        problems.append(f"the jsonl files hold {outcome.jsonl_lines} lines but the sink says it wrote {jsonl[0]}")
    return problems


def stalled_sources(outcome: Outcome) -> list[str]:
    """Sources with no new result over the last STALL_SHARE of the run."""
    if len(outcome.samples) < 2:
        return []
    last = outcome.samples[-1]
    cutoff = last.t - STALL_SHARE * outcome.settings.seconds
    earlier = [s for s in outcome.samples if s.t <= cutoff]
    then = earlier[-1].by_source if earlier else {}
    names = [*CLIP_SECONDS, *LAVFI]
    return [f"source {name}: no new result over the last {clock(last.t - (earlier[-1].t if earlier else 0))}"
            for name in names if last.by_source.get(name, 0) <= then.get(name, 0)]


# ---- output ----------------------------------------------------------------------------------


def render_table(samples: list[Sample], warmup: float, window: Growth) -> str:
    base, end = {id(s) for s in window.base}, {id(s) for s in window.end}
    header = (f"{'time':>6} {'frames':>8} {'fps':>6} {'jsonl':>8} {'rss MB':>8} {'anon MB':>8} {'fds':>5} "
              f"{'threads':>7} {'disk MB':>8}  note")
    lines = [header]
    for index, s in enumerate(samples):
        notes = ["warm-up"] * (s.t < warmup) + ["baseline"] * (id(s) in base) + ["end"] * (id(s) in end)
        lines.append(f"{clock(s.t):>6} {s.frames:>8} {fps(samples, index):>6.1f} {s.jsonl:>8} {s.rss_mb:>8.1f} "
                     f"{s.anon_kb / 1024:>8.1f} {s.fds:>5} {s.threads:>7} {s.disk_bytes / 1e6:>8.1f}  "
                     + "+".join(notes))
    return "\n".join(lines)


def render_growth(outcome: Outcome, window: Growth) -> str:
    if not window.valid:
        return "growth: too few samples after the warm-up to compare (run longer or sample more often)"
    steady = after_warmup(outcome)
    rss_ok = "PASS" if window.rss_pct < 5 else "FAIL"
    fd_ok = "PASS" if window.fd_growth == 0 else "FAIL"
    rss = (f"rss: baseline {window.rss_base_mb:.1f} MB (median of {len(window.base)} from {clock(window.base[0].t)}), "
           f"end {window.rss_end_mb:.1f} MB (median of the last {len(window.end)}): {window.rss_pct:+.2f} % "
           f"(target < 5: {rss_ok}); slope after warm-up {rss_slope_mb_per_min(steady):+.2f} MB/min")
    fds = f"fds: baseline {window.fd_base}, end {window.fd_end}: {window.fd_growth:+d} (target 0: {fd_ok})"
    lines = [rss, fds]
    if len(steady) < 2 * WINDOW:
        lines.append(f"note: only {len(steady)} samples after the warm-up; growth figures say little")
    diff = Counter(window.end[-1].fd_kinds)
    diff.subtract(window.base[0].fd_kinds)
    changed = ", ".join(f"{n:+d} {kind}" for kind, n in sorted(diff.items()) if n)
    if changed:
        lines.append(f"fds by kind, last sample vs first baseline sample: {changed}")
    return "\n".join(lines)


def render_delivery(outcome: Outcome) -> str:
    counts = outcome.counts
    if counts is None:
        return "results: none"
    jsonl = summary_counts(outcome.summary, "jsonl")
    per_source = ", ".join(f"{name} {n}" for name, n in sorted(counts.by_source.items()))
    return (f"results: {counts.unique} distinct at the receiver ({counts.received - counts.unique} replays, "
            f"{counts.requests} requests); jsonl sink wrote {jsonl[0] if jsonl else 'nan'} "
            f"({outcome.jsonl_lines} lines in its files); by source: {per_source}")


def render_stop(outcome: Outcome) -> str:
    deadline = DRAIN_TIMEOUT_S + STOP_GRACE_S
    if math.isnan(outcome.stop_s):
        return f"stop: streamer exited by itself with code {outcome.exit_code}"
    code = "killed" if outcome.exit_code is None else f"exit {outcome.exit_code}"
    return f"stop: SIGTERM -> {code} after {outcome.stop_s:.1f} s (deadline {deadline:g} s)"


def render_stderr(outcome: Outcome) -> list[str]:
    lines = []
    if outcome.warnings:
        common = Counter(outcome.warnings).most_common(5)
        lines.append(f"streamer warnings: {len(outcome.warnings)}; most common:")
        lines += [f"  {n} x {message[:200]}" for message, n in common]
    other = [line for line in outcome.other_stderr if line.strip() and "stopping, draining" not in line]
    if other:
        lines.append(f"other lines on streamer's stderr: {len(other)}; the first:")
        lines += [f"  {line[:200]}" for line in other[:10]]
    return lines


def headline(outcome: Outcome, window: Growth) -> str:
    minutes = outcome.samples[-1].t / 60 if outcome.samples else 0.0
    frames = outcome.counts.unique if outcome.counts else 0
    fd = "nan" if window.fd_growth is None else str(window.fd_growth)
    return (f"minutes={round(minutes, 2):g} frames={frames} rss_growth_pct={window.rss_pct:.2f} "
            f"fd_growth={fd} errors={len(outcome.problems)}")


def report(outcome: Outcome) -> None:
    s, window = outcome.settings, growth(outcome)
    print(f"soak: 2 looping files + 2 lavfi sources, {WIDTH}x{HEIGHT} at {FPS} fps, realtime -> centerface -> "
          f"jsonl (rotated at {s.rotate_mb:g} MB, keep {KEEP_ROTATED}) + webhook (batch {s.webhook_batch}, "
          f"{WEBHOOK_BATCH_MS} ms); {s.minutes:g} min from the first result, warm-up {s.warmup:g} s, "
          f"a sample every {s.interval:g} s")
    print(render_table(outcome.samples, s.warmup, window))
    if outcome.summary:
        print("streamer's summary:")
        print("\n".join(f"  {line}" for line in outcome.summary.splitlines()))
    print(render_delivery(outcome))
    print(render_stop(outcome))
    print(render_growth(outcome, window))
    for line in render_stderr(outcome):
        print(line)
    print(f"errors: {len(outcome.problems)}")
    for problem in outcome.problems:
        print(f"  {problem[:400]}")
    print(headline(outcome, window), flush=True)


# ---- main ------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> Settings:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="how long to soak, from the first result")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--warmup", type=float, default=None,
                        help="seconds left out of the baseline (default: min(120, 20%% of the run))")
    parser.add_argument("--webhook-batch", type=int, default=20, help="the webhook sink's batch_size")
    parser.add_argument("--rotate-mb", type=float, default=20.0, help="the JSONL sink's rotate_bytes, in MB")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (config, logs, outputs)")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.interval <= 0 or args.webhook_batch < 1 or args.rotate_mb <= 0:
        parser.error("--minutes, --interval, --webhook-batch and --rotate-mb must be positive")
    warmup = min(WARMUP_MAX_S, WARMUP_SHARE * 60 * args.minutes) if args.warmup is None else args.warmup
    if not 0 <= warmup < 60 * args.minutes:
        parser.error("--warmup must be >= 0 and shorter than the run")
    return Settings(args.minutes, args.interval, warmup, args.webhook_batch, args.rotate_mb, args.keep)


def stop_on_signals() -> None:
    """SIGTERM and SIGHUP end the harness like Ctrl-C: through the `finally` blocks that stop the child."""
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, interrupt)


def main(argv: Sequence[str] | None = None) -> None:
    settings = parse_args(argv)
    stop_on_signals()
    work = Path(tempfile.mkdtemp(prefix="streamer-soak-"))
    try:
        outcome = run(settings, work)
    except KeyboardInterrupt as interrupt:  # Ctrl-C, SIGTERM, SIGHUP: streamer is stopped by now
        progress(f"interrupted ({interrupt or 'SIGINT'}); streamer and the receiver are stopped")
        raise SystemExit(130) from None
    finally:
        if settings.keep:
            progress(f"kept the work folder: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    report(outcome)


if __name__ == "__main__":
    main()
