"""The fault matrix: each fault of streamer.testing.FaultProxy on each link a deployment depends on.

Links: the live sources (RTSP over TCP, RTSP over UDP, whose control connection alone passes the
proxy, and HLS over HTTP) and the network sinks (webhook, MQTT at QoS 1), each against a real server
on loopback. One case runs a pipeline through a proxy on one link, injects one fault, clears it and
measures:

    recovered    at least MIN_RESULTS_AFTER results after the fault's end: produced (a source case)
                 or produced and delivered (a sink case)
    recover_s    the fault's end -> the first of them
    lost         results the pipeline produced that never reached the receiver or the subscriber
    duplicates   deliveries beyond the first of each idempotency key

A source case delivers to a webhook receiver directly, so that `lost` means the same everywhere; a
sink case reads a lavfi pattern paced like a camera. Shared by tests/testing/test_fault_matrix.py
and bench/faults.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from aiohttp import web

import streamer
from streamer.sinks import CallbackSink
from streamer.sinks.base import idempotency_key
from streamer.testing import FaultProxy
from tests.rtsp import RtspServer
from tests.sinks.mosquitto import Mosquitto, mosquitto_binary
from tests.sinks.receiver import Receiver
from tests.sources.hls_live import LiveHls, running_live_hls

WIDTH, HEIGHT, FPS = 160, 96, 10
OPEN_TIMEOUT_S, READ_TIMEOUT_S, BACKOFF_INITIAL_S, BACKOFF_MAX_S = 2.0, 2.0, 0.2, 1.0
RECOVERY_BOUND_S = BACKOFF_MAX_S + OPEN_TIMEOUT_S  # what the issue asks recovery to stay within
# (a sink's connect or request timeout is its open timeout: the webhook's timeout_s, MQTT's connect_timeout_s)
FAULT_S = 3.0  # longer than the read timeout: a stall or freeze makes a source reconnect
THROTTLE_BYTES_PER_S = 2000
LATENCY_S = 0.5
CORRUPT_FRACTION = 0.001
WARM_S = 1.0  # results flowing before the fault
MIN_RESULTS_AFTER = 10
RECOVERY_DEADLINE_S = 15.0
FIRST_RESULT_TIMEOUT_S = 20.0
DELIVERY_TIMEOUT_S = 15.0  # after the pipeline closed, for the last deliveries to arrive

SOURCE_LINKS = ("rtsp-tcp", "rtsp-udp", "hls")
SINK_LINKS = ("webhook", "mqtt")
FAULTS = ("stall", "freeze", "cut", "cut_refuse", "throttle", "latency", "corrupt")
# Over UDP only the RTSP control connection passes the proxy: breaking it is what can go wrong there.
UDP_FAULTS = ("cut", "cut_refuse", "stall")


@dataclass(frozen=True)
class Case:
    fault: str
    link: str

    @property
    def id(self) -> str:
        return f"{self.fault}-{self.link}"

    @property
    def on_sink(self) -> bool:
        return self.link in SINK_LINKS


def matrix() -> list[Case]:
    """Every fault on every link where it applies."""
    cases = [Case(fault, link) for link in ("rtsp-tcp", "hls", *SINK_LINKS) for fault in FAULTS]
    return cases + [Case(fault, "rtsp-udp") for fault in UDP_FAULTS]


@dataclass
class Outcome:
    case: Case
    recovered: bool
    recover_s: float | None
    produced: int
    delivered: int  # distinct keys delivered
    lost: int
    duplicates: int
    fault_s: float  # how long the fault was in force
    note: str = ""


# ---- faults ------------------------------------------------------------------------------------


async def inject(fault: str, proxy: FaultProxy) -> None:
    """Apply `fault` for FAULT_S (a cut is one blow), then clear the link."""
    if fault == "freeze":
        await proxy.freeze(FAULT_S)
    elif fault == "cut":
        proxy.cut()
    elif fault == "cut_refuse":
        proxy.cut(refuse_s=FAULT_S)
        await anyio.sleep(FAULT_S)
    else:
        START[fault](proxy)
        await anyio.sleep(FAULT_S)
    proxy.clear()


START: dict[str, Callable[[FaultProxy], None]] = {
    "stall": FaultProxy.stall,
    "throttle": lambda proxy: proxy.throttle(THROTTLE_BYTES_PER_S),
    "latency": lambda proxy: proxy.latency(LATENCY_S),
    "corrupt": lambda proxy: proxy.corrupt(CORRUPT_FRACTION, seed=14),
}


# ---- what arrives where ------------------------------------------------------------------------


@dataclass
class Arrivals:
    """(idempotency key, monotonic time) of everything that arrived, duplicates included."""

    items: list[tuple[str, float]] = field(default_factory=list)

    def add(self, key: str) -> None:
        self.items.append((key, time.monotonic()))

    def keys(self) -> set[str]:
        return {key for key, _ in self.items}

    def first_times(self) -> dict[str, float]:
        first: dict[str, float] = {}
        for key, at in self.items:
            first.setdefault(key, at)
        return first


@dataclass
class TimedReceiver(Receiver):
    """The test webhook receiver, noting when each accepted result arrived."""

    arrivals: Arrivals = field(default_factory=Arrivals)

    def _answer(self, body: bytes, headers: dict[str, str]) -> web.Response:
        response = super()._answer(body, headers)
        if response.status == 200:
            for result in json.loads(body):
                self.arrivals.add(result["idempotency_key"])
        return response


async def subscribe(broker_port: int, topic: str, arrivals: Arrivals, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
    """A QoS 1 subscriber straight to the broker (not through the proxy), until cancelled."""
    import aiomqtt

    async with aiomqtt.Client("127.0.0.1", broker_port) as client:
        await client.subscribe(topic, qos=1)
        task_status.started()
        async for message in client.messages:
            arrivals.add(json.loads(message.payload)["idempotency_key"])


# ---- servers and configs -----------------------------------------------------------------------


@dataclass
class Servers:
    rtsp: RtspServer
    hls: LiveHls
    broker: Mosquitto | None  # None where mosquitto is not installed


@asynccontextmanager
async def running_servers(directory: Path) -> AsyncIterator[Servers]:
    """The RTSP server, the live HLS server and (where installed) a mosquitto broker, shared by every case."""
    async with AsyncExitStack() as stack:
        rtsp = RtspServer(width=WIDTH, height=HEIGHT, fps=FPS)
        await anyio.to_thread.run_sync(rtsp.start)
        stack.callback(rtsp.stop)
        hls = await stack.enter_async_context(running_live_hls(fps=FPS, width=WIDTH, height=HEIGHT))
        broker = None
        if mosquitto_binary() is not None:
            broker = await anyio.to_thread.run_sync(Mosquitto(directory / "mosquitto").start)
            stack.callback(broker.stop)
        yield Servers(rtsp, hls, broker)


async def load_model() -> Any:
    """CenterFace at the frames' own size: fast enough to keep up with every case's camera."""
    return await streamer.AutoModel.load("centerface", input_size=(WIDTH, HEIGHT))


def upstream_port(case: Case, servers: Servers, receiver: Receiver) -> int:
    if case.link == "webhook":
        return receiver.port
    if case.link == "mqtt":
        assert servers.broker is not None
        return servers.broker.port
    return servers.hls.port if case.link == "hls" else servers.rtsp.port


def source_config(case: Case, port: int) -> dict[str, Any]:
    """The source of a case: the proxied one, or a paced pattern when the fault is on the sink."""
    if case.on_sink:
        return {"type": "lavfi", "id": "cam", "graph": f"testsrc2=size={WIDTH}x{HEIGHT}:rate={FPS}"}
    retry = {"open_timeout_s": OPEN_TIMEOUT_S, "read_timeout_s": READ_TIMEOUT_S,
             "backoff_initial_s": BACKOFF_INITIAL_S, "backoff_max_s": BACKOFF_MAX_S}
    if case.link == "hls":
        return {"type": "hls", "id": "cam", "url": f"http://127.0.0.1:{port}/live/index.m3u8", **retry}
    transport = "udp" if case.link == "rtsp-udp" else "tcp"
    return {"type": "rtsp", "id": "cam", "url": f"rtsp://127.0.0.1:{port}/stream", "transport": transport, **retry}


def sink_config(case: Case, port: int, receiver: Receiver) -> dict[str, Any]:
    """The network sink of a case: through the proxy when the fault is on it, else straight to the receiver."""
    if case.link == "mqtt":
        return {"type": "mqtt", "host": "127.0.0.1", "port": port, "topic": f"faults/{case.id}/{{source}}", "qos": 1,
                "status_topic": None, "keepalive_s": 1, "connect_timeout_s": OPEN_TIMEOUT_S,
                "backoff_initial_s": BACKOFF_INITIAL_S,
                "backoff_max_s": BACKOFF_MAX_S, "drain_timeout_s": DELIVERY_TIMEOUT_S}
    url = f"http://127.0.0.1:{port if case.link == 'webhook' else receiver.port}/hook"
    return {"type": "webhook", "url": url, "timeout_s": OPEN_TIMEOUT_S, "backoff_s": BACKOFF_INITIAL_S,
            "backoff_max_s": BACKOFF_MAX_S, "drain_s": DELIVERY_TIMEOUT_S}


# ---- one case ----------------------------------------------------------------------------------


async def wait_until(condition: Callable[[], bool], timeout_s: float) -> bool:
    with anyio.move_on_after(timeout_s):
        while not condition():
            await anyio.sleep(0.02)
        return True
    return False


def results_after(case: Case, produced: Arrivals, delivered: Arrivals, since: float) -> list[float]:
    """When each result after `since` arrived: produced ones (a source case), produced and delivered (a sink case)."""
    made = produced.first_times()
    if not case.on_sink:
        return sorted(at for at in made.values() if at >= since)
    return sorted(at for key, at in delivered.first_times().items() if made.get(key, 0.0) >= since)


async def run_case(case: Case, servers: Servers, model: Any) -> Outcome:
    produced = Arrivals()
    recorder = CallbackSink(lambda result: produced.add(idempotency_key(result)))
    async with AsyncExitStack() as stack:
        receiver = await TimedReceiver().start()
        stack.push_async_callback(receiver.stop)
        delivered = receiver.arrivals
        if case.link == "mqtt":
            assert servers.broker is not None
            delivered = Arrivals()
            group = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(group.cancel_scope.cancel)
            await group.start(subscribe, servers.broker.port, f"faults/{case.id}/#", delivered)
        proxy = await stack.enter_async_context(FaultProxy(upstream_port(case, servers, receiver)))
        config = {"sources": [source_config(case, proxy.port)], "sinks": [sink_config(case, proxy.port, receiver)]}
        async with streamer.open(config, model=model, sinks=[recorder], results=False) as stream:
            if not await wait_until(lambda: bool(produced.items), FIRST_RESULT_TIMEOUT_S):
                return Outcome(case, False, None, 0, 0, 0, 0, 0.0, note=f"no first result: {stream.summary.sources}")
            await anyio.sleep(WARM_S)
            started = time.monotonic()
            await inject(case.fault, proxy)
            ended = time.monotonic()
            await wait_until(lambda: len(results_after(case, produced, delivered, ended)) >= MIN_RESULTS_AFTER,
                             RECOVERY_DEADLINE_S)
        await wait_until(lambda: produced.keys() <= delivered.keys(), DELIVERY_TIMEOUT_S)
        return outcome(case, produced, delivered, ended, ended - started, note=_note(case, stream.summary))


def outcome(case: Case, produced: Arrivals, delivered: Arrivals, ended: float, fault_s: float, note: str) -> Outcome:
    after = results_after(case, produced, delivered, ended)
    recovered = len(after) >= MIN_RESULTS_AFTER
    lost = len(produced.keys() - delivered.keys())
    duplicates = len(delivered.items) - len(delivered.keys())
    recover_s = after[0] - ended if after else None
    return Outcome(case, recovered, recover_s, len(produced.keys()), len(delivered.keys()), lost, duplicates, fault_s, note)


def _note(case: Case, summary: Any) -> str:
    """How the faulty link's end fared: the source's reconnects and state, or the sink's counts."""
    if case.on_sink:
        report = next(report for name, report in summary.sinks.items() if name.startswith(case.link))
        return f"sink: {report.counts()}"
    report = summary.sources["cam"]
    note = f"source: {report.reconnects} reconnects, {report.state}"
    return note + (f": {report.error}" if report.error else "")
