"""MQTT sink: each result as JSON on a topic per source, at QoS 0, 1 or 2, through broker restarts.

    write() -> in-flight buffer (bounded: when full, the oldest result is dropped) -> publisher task
                    ^                                                                    |
                    +------ a result leaves the buffer once the broker acknowledged it --+

The publisher task holds one connection (aiomqtt) and, when it breaks, reconnects with capped
exponential backoff and jitter, then sends again, in order, every result not yet acknowledged. At
QoS 1 or 2 a result counts as delivered when aiomqtt's `publish` returns, i.e. after PUBACK or
PUBCOMP, so a broker restart loses nothing; a result may arrive twice, and receivers dedupe by its
`idempotency_key`. A retained "online" on `status_topic`, with a retained "offline" as the
connection's last will (and published on close), tells subscribers whether the daemon runs.

With `spool_dir` (QoS 1 or 2), every result in the buffer is also kept on disk (spool.py) until
the broker acknowledged it, so a worker that is killed, or closed while the broker is down, loses
none: whoever opens that folder next (the same worker restarted, or another taking its slot over)
sends those results first, with the same topics and payloads, hence the same idempotency keys.
"""

from __future__ import annotations

import logging
import os
import ssl
from collections import deque
from collections.abc import Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import anyio
import msgspec
from anyio.abc import TaskGroup, TaskStatus

from ..backoff import Backoff
from ..config import configured
from ..config.schema import MqttSinkConfig
from ..errors import ConfigError, SinkError
from ..frames import Event
from ..groups import leaves
from ..importing import import_optional
from ..wakeup import Wakeup
from .base import Item, Sink, keyed_record
from .spool import Spool

log = logging.getLogger(__name__)

WINDOW = 32  # publishes awaiting their acknowledgement at once (and paho's in-flight limit)
ACK_TIMEOUT_S = 30.0  # no PUBACK this long on a live connection: reconnect and send again
CLOSE_TIMEOUT_S = 2.0  # after giving up on the buffer: time left to say "offline" and disconnect
REFUSED_CODES = frozenset({133, 134, 135})  # client id not valid, bad user name or password, not authorized
ONLINE, OFFLINE = b"online", b"offline"


class _Secret:
    """A password that shows as *** in every repr (and so in every log line and traceback)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "'***'"


class _ReportOnce:
    """task_status.started(value), the first time only."""

    def __init__(self, task_status: TaskStatus[SinkError | None]) -> None:
        self.task_status = task_status
        self.done = False

    def __call__(self, value: SinkError | None) -> None:
        if not self.done:
            self.done = True
            self.task_status.started(value)


class _Spooled(msgspec.Struct, array_like=True):
    """A buffered result as the spool keeps it: the topic and the payload's JSON, as published."""

    topic: str
    payload: msgspec.Raw


@dataclass(eq=False)
class _Entry:
    """One result waiting in the buffer; `seq` numbers are consecutive from the buffer's left end."""

    seq: int
    topic: str
    payload: bytes
    acked: bool = False


class MqttSink(Sink):
    """Publish each result's JSON (`Result.to_dict()` plus `idempotency_key`) to an MQTT broker.

    `topic` may use {source}, {model} (the model id, `/` replaced by `_`) and {kind} ("detections"
    for a frame's result, the event's kind for an event). `password_env` names an
    environment variable read on open, so the password stays out of config files. `write()` never
    waits for the broker: up to `max_in_flight` results wait for it, then the oldest are dropped
    (counted in `dropped`). Closing waits up to `drain_timeout_s` for the rest to be delivered.
    """

    config: MqttSinkConfig

    def __init__(
        self,
        config: MqttSinkConfig | None = None,
        /,
        *,
        password: str | None = None,
        sync_interval_s: float = 0.2,
        **options: Any,
    ) -> None:
        """`password`: the password itself, for code that embeds streamer (a config file names an
        environment variable instead, `password_env`); `sync_interval_s`: how often the spool (with
        `spool_dir`) is fsynced."""
        config = configured(MqttSinkConfig, config, options)
        super().__init__(config, kinds=config.kinds)
        if password is not None and config.password_env is not None:
            raise ConfigError("give `password` or `password_env`, not both", "$.password_env")
        self.password = None if password is None else _Secret(password)
        self.sync_interval_s = sync_interval_s
        self._spool: Spool | None = None
        self.published = self.reconnects = self.dropped = 0
        self._buffer: deque[_Entry] = deque()
        self._next_seq = 0
        self._burst = 0  # results dropped since the broker last acknowledged one
        self._encoder = msgspec.json.Encoder()
        self._closing = self._giving_up = self._connected_before = False
        self._changed: Wakeup | None = None  # made in __aenter__, inside the event loop
        self._finished: anyio.Event | None = None
        self._group: TaskGroup | None = None
        self._stack: AsyncExitStack | None = None
        self._aiomqtt: Any = None

    @property
    def address(self) -> str:
        """host:port, safe to log."""
        host, port = self.config.host, self.config.port
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    @property
    def pending(self) -> int:
        """Results written but not yet acknowledged by the broker."""
        return sum(not entry.acked for entry in self._buffer)

    def describe(self) -> str:
        return f"mqtt {self.address} {self.config.topic} (QoS {self.config.qos})"

    def stats(self) -> dict[str, float]:
        dropped = self.dropped + (self._spool.dropped if self._spool is not None else 0)
        return {"published": self.published, "reconnects": self.reconnects, "dropped": dropped, "pending": self.pending}

    def __repr__(self) -> str:
        config = self.config
        return (
            f"MqttSink(host={config.host!r}, port={config.port}, topic={config.topic!r}, qos={config.qos}, "
            f"username={config.username!r}, password={self.password!r}, password_env={config.password_env!r})"
        )

    async def __aenter__(self) -> MqttSink:
        # Its import would hold up the loop; a missing aiomqtt is a MissingDependencyError naming the extra.
        self._aiomqtt = await anyio.to_thread.run_sync(import_optional, "aiomqtt", "mqtt", "the MQTT sink")
        login = self._login()
        self._changed, self._finished = Wakeup(), anyio.Event()
        self._closing = self._giving_up = self._connected_before = False
        async with AsyncExitStack() as stack:
            if self.config.spool_dir is not None:
                await self._open_spool(stack)
            self._group = await stack.enter_async_context(anyio.create_task_group())
            if self._spool is not None:
                self._group.start_soon(self._spool.sync_periodically, self.sync_interval_s)
            refusal = await self._group.start(self._run, login)
            if refusal is None:
                self._stack = stack.pop_all()
                return self
        raise refusal

    async def _open_spool(self, stack: AsyncExitStack) -> None:
        """Open the spool (closed when `stack` is) and put what an earlier run left first in the buffer."""
        config = self.config
        assert config.spool_dir is not None
        spool = await anyio.to_thread.run_sync(
            lambda: Spool(config.spool_dir, max_bytes=config.spool_max_bytes, what="mqtt spool",
                          takeover=config.spool_takeover)
        )
        stack.push_async_callback(self._close_spool, spool)
        self._spool = spool
        self._buffer.clear()
        self._next_seq = 0
        for record in await anyio.to_thread.run_sync(spool.peek_raw, len(spool)):
            kept = msgspec.json.decode(record, type=_Spooled)
            self._buffer.append(_Entry(self._next_seq, kept.topic, bytes(kept.payload)))
            self._next_seq += 1
        if self._buffer:
            log.info("mqtt sink %s: %d results spooled by an earlier run are sent first", self.address, len(self._buffer))

    async def _close_spool(self, spool: Spool) -> None:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(spool.close)
        if len(spool):
            log.warning("mqtt sink %s: %d results not acknowledged stay in %s; they are sent when a sink opens it again",
                        self.address, len(spool), spool.directory)

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._stack is not None and self._group is not None
        stack, self._stack = self._stack, None
        try:
            await self._close()
        finally:
            self._group.cancel_scope.cancel()  # a no-op once the publisher has finished
            await stack.aclose()

    async def _close(self) -> None:
        """Let the publisher deliver the buffer, say offline and disconnect, all within bounded time."""
        assert self._finished is not None
        self._closing = True
        self._notify()
        with anyio.move_on_after(self.config.drain_timeout_s):
            await self._finished.wait()
        if not self._finished.is_set():
            log.warning(
                "mqtt sink %s: %d results not delivered within %.1f s of closing; giving up on them",
                self.address, self.pending, self.config.drain_timeout_s,
            )
            self._giving_up = True
            self._notify()
            with anyio.move_on_after(CLOSE_TIMEOUT_S):
                await self._finished.wait()

    async def write(self, result: Item) -> None:
        assert self._changed is not None, "write() before the sink was opened"
        if len(self._buffer) >= self.config.max_in_flight:
            self._buffer.popleft()
            self._forget(1)
            self._count_drop()
        entry = _Entry(self._next_seq, self._topic_for(result), self._payload(result))
        if self._spool is not None:
            self._spool.append_raw(self._encoder.encode(_Spooled(entry.topic, msgspec.Raw(entry.payload))))
        self._buffer.append(entry)
        self._next_seq += 1
        self._notify()

    async def flush(self) -> None:
        """Wait until every result written so far was acknowledged (or dropped)."""
        assert self._changed is not None, "flush() before the sink was opened"
        while self.pending:
            await self._changed.wait()

    def _topic_for(self, result: Item) -> str:
        kind = result.kind if isinstance(result, Event) else "detections"
        return self.config.topic.format(
            source=topic_level(result.source_id), model=topic_level(result.model.model_id), kind=topic_level(kind)
        )

    def _payload(self, result: Item) -> bytes:
        return self._encoder.encode(keyed_record(result))

    def _login(self) -> _Secret | None:
        variable = self.config.password_env
        if variable is None:
            return self.password
        value = os.environ.get(variable)
        if value is None:
            raise SinkError(f"mqtt sink {self.address}: the environment variable {variable} is not set")
        return _Secret(value)

    def _notify(self) -> None:
        """Wake whoever waits for a change in the buffer (the publisher, flush(), close)."""
        assert self._changed is not None
        self._changed.notify()

    def _count_drop(self) -> None:
        self.dropped += 1
        self._burst += 1
        if self._burst == 1:
            log.warning(
                "mqtt sink %s: %d results wait for the broker; dropping the oldest to make room",
                self.address, self.config.max_in_flight,
            )

    # The publisher task: connect, publish, reconnect.

    async def _run(self, login: _Secret | None, *, task_status: TaskStatus[SinkError | None]) -> None:
        """Until closed: deliver the buffer over one connection after another.

        Reports to __aenter__ after the first attempt: None (connected, or retrying in the background)
        or the SinkError for a broker that refused the login, which no retry can fix.
        """
        report = _ReportOnce(task_status)
        attempt = 0
        while not self._giving_up:
            failure, connected = await self._connection(login, attempt, report)
            if failure is None:
                break
            attempt = 1 if connected else attempt + 1
            refused = _reason_code(failure) in REFUSED_CODES
            if refused and not report.done:
                report(SinkError(f"mqtt sink {self.address}: the broker refused the login ({failure})"))
                return
            report(None)
            self._log_failure(failure, attempt, refused, lost=connected)
            await self._wait_for_retry(attempt)
        assert self._finished is not None
        self._finished.set()

    async def _connection(
        self, login: _Secret | None, attempt: int, report: _ReportOnce
    ) -> tuple[Exception | None, bool]:
        """Connect, say online, deliver until closed, say offline: (the MqttError that ended it, connected)."""
        connected = delivered = False
        failure: Exception | None = None
        try:
            async with self._client(login) as client:
                connected = True
                self._count_connection(attempt)
                await self._say(client, ONLINE)
                report(None)
                await self._session(client)
                delivered = True
        except* self._aiomqtt.MqttError as errors:
            failure = next(leaves(errors))  # type: ignore[assignment]
        return (None if delivered else failure), connected  # delivered: only the disconnect went wrong

    def _count_connection(self, failed_attempts: int) -> None:
        if failed_attempts:
            log.info("mqtt sink %s: connected after %d failed attempt(s)", self.address, failed_attempts)
        if self._connected_before:
            self.reconnects += 1
        self._connected_before = True

    def _client(self, login: _Secret | None) -> Any:
        mqtt, config = self._aiomqtt, self.config
        will = None if config.status_topic is None else mqtt.Will(config.status_topic, OFFLINE, qos=1, retain=True)
        client = mqtt.Client(
            config.host,
            config.port,
            username=config.username,
            password=None if login is None else login.reveal(),
            identifier=config.client_id,
            will=will,
            keepalive=config.keepalive_s,
            timeout=config.connect_timeout_s,
            max_inflight_messages=WINDOW,
            tls_context=ssl.create_default_context() if config.tls else None,
            logger=logging.getLogger(f"{__name__}.client"),
        )
        client.pending_calls_threshold = WINDOW  # aiomqtt warns above this many awaited publishes
        return client

    async def _session(self, client: Any) -> None:
        """Publish until closed, then say offline; raises MqttError when the connection breaks."""
        async with anyio.create_task_group() as group:
            group.start_soon(self._watch, client)
            await self._feed(client, group)
            group.cancel_scope.cancel()
        await self._say(client, OFFLINE)

    async def _say(self, client: Any, status: bytes) -> None:
        if self.config.status_topic is not None:
            await client.publish(self.config.status_topic, status, qos=1, retain=True, timeout=ACK_TIMEOUT_S)

    async def _watch(self, client: Any) -> None:
        """Raise MqttError when the connection drops (aiomqtt's message iterator does so)."""
        async for _ in client.messages:
            pass

    async def _feed(self, client: Any, group: TaskGroup) -> None:
        """Start publishing entries in order, at most WINDOW unacknowledged; return once closed and empty."""
        window = anyio.Semaphore(WINDOW)
        seq = self._buffer[0].seq if self._buffer else self._next_seq
        while True:
            await window.acquire()
            entry = await self._next_unacked(seq)
            if entry is None:
                return
            seq = entry.seq + 1
            group.start_soon(self._publish, client, entry, window)

    async def _next_unacked(self, seq: int) -> _Entry | None:
        """The first unacknowledged entry from `seq` on, waiting for one; None once closing allows."""
        assert self._changed is not None
        while True:
            for entry in self._entries_from(seq):
                if not entry.acked:
                    return entry
            if self._closing and (self._giving_up or not self._buffer):
                return None
            await self._changed.wait()

    def _entries_from(self, seq: int) -> Iterator[_Entry]:
        if self._buffer:
            start = max(0, seq - self._buffer[0].seq)
            for index in range(start, len(self._buffer)):
                yield self._buffer[index]

    async def _publish(self, client: Any, entry: _Entry, window: anyio.Semaphore) -> None:
        qos, retain = self.config.qos, self.config.retain
        try:
            await client.publish(entry.topic, entry.payload, qos=qos, retain=retain, timeout=ACK_TIMEOUT_S)
        finally:
            window.release()
        entry.acked = True
        self.published += 1
        removed = 0
        while self._buffer and self._buffer[0].acked:
            self._buffer.popleft()
            removed += 1
        self._forget(removed)
        if self._burst:
            log.warning("mqtt sink %s: dropped %d results the broker could not take in time", self.address, self._burst)
            self._burst = 0
        self._notify()

    def _forget(self, removed: int) -> None:
        """The buffer's first `removed` entries are gone (acknowledged, or dropped): so from the spool.

        The spool holds the buffer's newest entries (a full spool drops its oldest), so of those
        removed, the first `len(buffer) + removed - len(spool)` were not in it any more.
        """
        spool = self._spool
        if spool is None or not removed:
            return
        count = removed - max(0, len(self._buffer) + removed - len(spool))
        if count > 0:
            spool.peek_raw(count)
            spool.commit(count)

    def _log_failure(self, failure: Exception | None, attempt: int, refused: bool, *, lost: bool) -> None:
        """The first failure of an outage as a warning, the retries after it at DEBUG; refusals as errors."""
        reason = str(failure.__cause__ or failure) if failure is not None else "unknown error"
        level = logging.ERROR if refused else logging.WARNING if attempt == 1 else logging.DEBUG
        log.log(
            level, "mqtt sink %s: %s: %s (attempt %d, %d results waiting); retrying",
            self.address, "connection lost" if lost else "cannot connect", reason, attempt, self.pending,
        )

    async def _wait_for_retry(self, attempt: int) -> None:
        """Sleep the backoff delay, or less if close gives up on the buffer meanwhile."""
        assert self._changed is not None
        with anyio.move_on_after(Backoff(self.config.backoff_initial_s, self.config.backoff_max_s).delay(attempt)):
            while not self._giving_up:
                await self._changed.wait()


def topic_level(value: str) -> str:
    """A source or model id made safe as one topic level (no `/`, `+` or `#`)."""
    return value.replace("/", "_").replace("+", "_").replace("#", "_")


def _reason_code(error: Exception | None) -> int | None:
    code = getattr(error, "rc", None)
    return getattr(code, "value", code)
