"""Webhook sink: POST results as JSON to an HTTP endpoint, never losing one while it is down.

`write()` only appends the result to a durable spool on disk (see spool.py) and returns; a delivery
task sends the spool's oldest results, in order, and removes them once the endpoint answered 2xx:

    2xx                          delivered: committed
    5xx, 408, 429, timeout,      retried with capped exponential backoff and jitter, for as long
    connection error             as it takes (the spool keeps the results meanwhile, even across a
                                 restart); 429's Retry-After is honoured up to the cap
    other 4xx (and 1xx, 3xx)     the endpoint refuses them: the batch goes to the dead-letter JSONL
                                 file with the status and the response's text, and delivery goes on

The body is a JSON array of `Result.to_dict()` objects, each with an `idempotency_key` (stored with
the result, so a replay sends the same key); with `batch_size == 1` the key is also sent as the
`Idempotency-Key` header. With a secret, `X-Streamer-Signature: sha256=<hex HMAC-SHA256 of the
body bytes>`. Header values and the secret are never logged, and URLs are logged with credentials
masked and the query hidden.

Closing drains: delivery goes on for up to `drain_s`; what is still pending stays in the spool
and is sent first when a sink opens that spool folder again: this process or another (a worker
taking a dead one's slot over). A spool held by a live process is refused, unless `spool_takeover`
fences that process off (spool.py).
"""

from __future__ import annotations

import hashlib
import hmac
import importlib
import logging
import os
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

import anyio
import msgspec

from ..backoff import Backoff
from ..config import configured
from ..config.schema import WebhookSinkConfig
from ..errors import ConfigError, SinkError
from ..redact import redact, redact_url
from ..wakeup import Wakeup
from .base import Item, Sink, keyed_record
from .files import prepare_output
from .spool import Spool, json_default

if TYPE_CHECKING:
    import aiohttp
    from anyio.abc import TaskGroup

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Streamer-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
RETRYABLE_4XX = frozenset({408, 429})
RESPONSE_TEXT_LIMIT = 4096
REMIND_EVERY_S = 60.0  # while the endpoint keeps failing, a warning this often (the rest at DEBUG)

Outcome = Literal["delivered", "retry", "refused"]


class _Keyed(msgspec.Struct):
    idempotency_key: str


def default_spool_dir(url: str) -> Path:
    """`$XDG_STATE_HOME/streamer/spool/webhook-<hash of the URL>` (`~/.local/state` by default)."""
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "streamer" / "spool" / f"webhook-{hashlib.sha256(url.encode()).hexdigest()[:16]}"


class WebhookSink(Sink):
    """POST results to `url` as JSON arrays, spooled on disk until the endpoint accepts them.

    Batching: a request carries up to `batch_size` results and leaves when it is full or `batch_ms`
    after delivery found the first of them waiting (0: at once, with whatever is waiting).
    Counters: `written`, `delivered`, `retried` (failed attempts), `spooled` (results that had to
    wait in the spool while the endpoint was failing), `dead_lettered`, `dropped` (by the full
    spool), `pending` (in the spool now).
    """

    config: WebhookSinkConfig

    def __init__(
        self,
        config: WebhookSinkConfig | None = None,
        /,
        *,
        secret: str | None = None,
        sync_interval_s: float = 0.2,
        **options: Any,
    ) -> None:
        """`secret`: the signing key itself, for code that embeds streamer (a config file names an
        environment variable instead, `secret_env`); `sync_interval_s`: how often the spool is fsynced."""
        config = configured(WebhookSinkConfig, config, options)
        super().__init__(config, kinds=config.kinds)
        if secret is not None and config.secret_env is not None:
            raise ConfigError("give `secret` or `secret_env`, not both", "$.secret_env")
        self.spool_dir = Path(config.spool_dir) if config.spool_dir is not None else default_spool_dir(config.url)
        self.dead_letter_path = Path(config.dead_letter_path or self.spool_dir / "dead-letter.jsonl")
        self.sync_interval_s = sync_interval_s
        self.written = self.delivered = self.retried = self.spooled = self.dead_lettered = 0
        self._public_url = redact_url(config.url)
        self._secret = secret.encode() if secret is not None else None
        self._headers: dict[str, str] = {}
        self._encoder = msgspec.json.Encoder(enc_hook=json_default)
        self._spool: Spool | None = None
        self._session: aiohttp.ClientSession | None = None
        self._stack: AsyncExitStack | None = None
        self._group: TaskGroup | None = None
        self._changed: Wakeup | None = None  # made in __aenter__, inside the event loop: a write, a delivery, close
        self._delivery_done: anyio.Event | None = None
        self._closing = False
        self._failures = 0  # consecutive failed attempts
        self._warned_at = 0.0
        self._backoff: anyio.CancelScope | None = None

    @property
    def url(self) -> str:
        return self.config.url

    def __repr__(self) -> str:
        return f"WebhookSink({self._public_url!r})"

    def describe(self) -> str:
        return f"webhook {self._public_url}"

    @property
    def dropped(self) -> int:
        return self._spool.dropped if self._spool is not None else 0

    @property
    def pending(self) -> int:
        return len(self._spool) if self._spool is not None else 0

    def stats(self) -> dict[str, float]:
        return {
            "delivered": self.delivered,
            "retried": self.retried,
            "spooled": self.spooled,
            "dead_lettered": self.dead_lettered,
            "dropped": self.dropped,
            "pending": self.pending,
        }

    # ---- the Sink interface ------------------------------------------------------------------

    async def __aenter__(self) -> WebhookSink:
        await anyio.to_thread.run_sync(importlib.import_module, "aiohttp")  # 0.25 s the loop need not wait
        import aiohttp

        self._headers = self._resolve_headers()
        self._closing = False
        self._changed, self._delivery_done = Wakeup(), anyio.Event()
        async with AsyncExitStack() as stack:
            self._spool = await anyio.to_thread.run_sync(self._open_spool)
            stack.push_async_callback(self._close_spool)
            await anyio.to_thread.run_sync(prepare_output, self.dead_letter_path, "webhook dead-letter file")
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.config.timeout_s))
            stack.push_async_callback(self._close_session, self._session)
            self._group = await stack.enter_async_context(anyio.create_task_group())
            self._group.start_soon(self._deliver_all)
            self._group.start_soon(self._spool.sync_periodically, self.sync_interval_s)
            self._stack = stack.pop_all()
        if len(self._spool):
            log.info("%s: %d results spooled by an earlier run are sent first", self.describe(), len(self._spool))
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        stack, self._stack = self._stack, None
        if stack is None:
            return None
        error: BaseException | None = None
        try:
            await self._drain()
        except BaseException as exc:  # cancelled while draining: re-raised below, after closing
            error = exc
        assert self._group is not None
        self._group.cancel_scope.cancel()  # the closing callbacks below are shielded from cancellation
        if error is None:
            return await stack.__aexit__(*exc_info)
        if not await stack.__aexit__(type(error), error, error.__traceback__):
            raise error
        return None

    async def write(self, result: Item) -> None:
        """Append the result to the spool (a small disk write); delivery happens in the background."""
        assert self._spool is not None, "write() before the sink was opened"
        self._spool.append_raw(self._encoder.encode(keyed_record(result)))
        self.written += 1
        if self._failures:
            self.spooled += 1
        self._notify()

    async def flush(self) -> None:
        """Wait until the endpoint took every result written so far (or refused it: dead-lettered)."""
        assert self._changed is not None, "flush() before the sink was opened"
        while self.pending:
            await self._changed.wait()

    # ---- opening and closing -----------------------------------------------------------------

    def _resolve_headers(self) -> dict[str, str]:
        """Literal headers, then those read from the environment; the secret from its variable."""
        headers = {"Content-Type": "application/json", **self.config.headers}
        for name, variable in self.config.header_env.items():
            headers[name] = self._from_environment(variable, f"header {name!r}")
        if self.config.secret_env is not None:
            self._secret = self._from_environment(self.config.secret_env, "the signing secret").encode()
        for name, value in headers.items():
            if any(c in name + value for c in "\r\n\0"):
                raise SinkError(f"{self.describe()}: header {name!r} has a line break or NUL in its name or value")
        if urlsplit(self.url).username is not None and "authorization" in {name.lower() for name in headers}:
            raise SinkError(f"{self.describe()}: give credentials in the URL or an Authorization header, not both")
        return headers

    def _from_environment(self, variable: str, what: str) -> str:
        value = os.environ.get(variable)
        if not value:
            raise SinkError(f"{self.describe()}: {what} comes from ${variable}, which is not set (or empty)")
        return value

    def _open_spool(self) -> Spool:
        config = self.config
        return Spool(self.spool_dir, max_bytes=config.spool_max_bytes, what="webhook spool", takeover=config.spool_takeover)

    async def _close_session(self, session: aiohttp.ClientSession) -> None:
        with anyio.CancelScope(shield=True):
            await session.close()

    async def _close_spool(self) -> None:
        spool = self._spool
        assert spool is not None
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(spool.close)
        if len(spool):
            log.warning(
                "%s: %d results not delivered yet stay in %s; they are sent when the sink opens it again",
                self.describe(), len(spool), self.spool_dir,
            )

    async def _drain(self) -> None:
        """Let delivery go on until the spool is empty, for at most `drain_s`."""
        assert self._delivery_done is not None
        self._closing = True
        self._notify()
        if self._backoff is not None:
            self._backoff.cancel()
        with anyio.move_on_after(self.config.drain_s):
            await self._delivery_done.wait()

    # ---- delivery ----------------------------------------------------------------------------

    async def _deliver_all(self) -> None:
        """Send the spool's oldest batch until closing finds it empty."""
        assert self._spool is not None
        while True:
            batch = await self._next_batch(self._spool)
            if not batch:
                assert self._delivery_done is not None
                self._delivery_done.set()
                return
            await self._deliver(batch)

    async def _next_batch(self, spool: Spool) -> list[bytes]:
        """The next batch: full, or what waits once `batch_ms` passed; empty when closing and done."""
        while not len(spool):
            if self._closing:
                return []
            await self._wait_for_writes()
        batch_size, batch_ms = self.config.batch_size, self.config.batch_ms
        if len(spool) < batch_size and batch_ms > 0 and not self._closing:
            with anyio.move_on_after(batch_ms / 1000):
                while len(spool) < batch_size and not self._closing:
                    await self._wait_for_writes()
        return spool.peek_raw(batch_size)

    async def _wait_for_writes(self) -> None:
        assert self._changed is not None
        await self._changed.wait()

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.notify()

    async def _deliver(self, batch: list[bytes]) -> None:
        """One attempt: commit on success or refusal, back off before the next one on failure."""
        assert self._spool is not None
        answer = await self._post(b"[" + b",".join(batch) + b"]", batch)
        if answer.outcome == "retry":
            await self._back_off(answer)
            return
        if answer.outcome == "refused":
            await anyio.to_thread.run_sync(self._dead_letter, batch, answer)
            self.dead_lettered += len(batch)
        else:
            self.delivered += len(batch)
        self._spool.commit(len(batch))
        self._recovered()
        self._notify()

    async def _post(self, body: bytes, batch: list[bytes]) -> _Answer:
        """POST one body and classify the answer (or the failure to get one)."""
        import aiohttp

        from ..engine.retry import describe_failure

        assert self._session is not None
        try:
            async with self._session.post(
                self.url, data=body, headers=self._request_headers(body, batch), allow_redirects=False
            ) as response:
                if 200 <= response.status < 300:
                    await response.read()
                    return _Answer("delivered", response.status)
                retry = response.status >= 500 or response.status in RETRYABLE_4XX
                return _Answer(
                    "retry" if retry else "refused",
                    response.status,
                    await _response_text(response),
                    _seconds(response.headers.get("Retry-After", "")),
                )
        except (aiohttp.ClientError, TimeoutError) as exc:
            return _Answer("retry", None, redact(describe_failure(exc), self.url))

    def _request_headers(self, body: bytes, batch: list[bytes]) -> dict[str, str]:
        headers = dict(self._headers)
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = "sha256=" + hmac.new(self._secret, body, hashlib.sha256).hexdigest()
        if self.config.batch_size == 1:
            try:
                headers[IDEMPOTENCY_HEADER] = msgspec.json.decode(batch[0], type=_Keyed).idempotency_key
            except msgspec.DecodeError:  # a damaged record: the endpoint will say what it thinks of it
                pass
        return headers

    async def _back_off(self, answer: _Answer) -> None:
        delay = Backoff(self.config.backoff_s, self.config.backoff_max_s).delay(self._failures + 1)
        delay = max(delay, min(answer.retry_after_s, self.config.backoff_max_s))
        if not self._failures:
            self.spooled += self.pending  # from now on, what is written waits in the spool too
        self._failures += 1
        self.retried += 1
        loud = self._failures == 1 or time.monotonic() - self._warned_at >= REMIND_EVERY_S
        self._warned_at = time.monotonic() if loud else self._warned_at
        log.log(logging.WARNING if loud else logging.DEBUG, "%s: %s; %d results wait in the spool; retrying in %.2f s",
                self.describe(), answer.reason(), self.pending, delay)
        with anyio.CancelScope() as self._backoff:  # closing cuts this wait short: one more try at once
            await anyio.sleep(delay)
        self._backoff = None

    def _recovered(self) -> None:
        if self._failures:
            log.info("%s: the endpoint accepts results again after %d failed attempts; %d results to send",
                     self.describe(), self._failures, self.pending)
            self._failures = 0

    def _dead_letter(self, batch: list[bytes], answer: _Answer) -> None:
        """Append the refused batch, the status and the answer to the dead-letter file (blocking)."""
        line = self._encoder.encode({
            "time": time.time(),
            "url": self._public_url,
            "status": answer.status,
            "response": answer.text,
            "results": [_decoded(record) for record in batch],
        })
        try:
            with open(self.dead_letter_path, "ab") as file:
                file.write(line + b"\n")
                file.flush()
                os.fsync(file.fileno())
        except OSError as exc:
            raise SinkError(f"{self.describe()}: cannot write {str(self.dead_letter_path)!r}: {exc.strerror}") from exc
        log.error("%s: %s refused %d results; they are in %s",
                  self.describe(), answer.reason(), len(batch), self.dead_letter_path)


@dataclass(frozen=True)
class _Answer:
    """How one attempt went: the endpoint's status and text, or (status None) why there was none."""

    outcome: Outcome
    status: int | None
    text: str = ""
    retry_after_s: float = 0.0

    def reason(self) -> str:
        return self.text if self.status is None else f"HTTP {self.status} {self.text[:200]!r}"


async def _response_text(response: aiohttp.ClientResponse) -> str:
    """The start of the answer's body, for the dead-letter file and the log (the status decides)."""
    import aiohttp

    try:
        data = await response.content.read(RESPONSE_TEXT_LIMIT)
    except (aiohttp.ClientError, TimeoutError):
        return ""
    try:
        return data.decode(response.charset or "utf-8", errors="replace")
    except LookupError:
        return data.decode("utf-8", errors="replace")


def _decoded(record: bytes) -> Any:
    """A spooled record as JSON, or as text if it is damaged (so the dead-letter file keeps it)."""
    try:
        return msgspec.json.decode(record)
    except msgspec.DecodeError:
        return record.decode("utf-8", errors="replace")


def _seconds(retry_after: str) -> float:
    """Retry-After in seconds (only the delta-seconds form; a date counts as nothing)."""
    try:
        return max(0.0, float(retry_after))
    except ValueError:
        return 0.0

