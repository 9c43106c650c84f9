"""Try a network operation again after transient failures, waiting as `streamer.backoff.Backoff` says."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

from ..backoff import Backoff
from ..errors import DownloadError
from ..redact import redact

logger = logging.getLogger("streamer.engine")

T = TypeVar("T")

MAX_DELAY_S = 30.0


class TransientError(Exception):
    """A failure worth another try, such as an HTTP 5xx answer."""


def transient_errors() -> tuple[type[BaseException], ...]:
    """The failures worth another try (aiohttp is imported here, by the first retry, not at start)."""
    import aiohttp

    return (TransientError, aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError)


def describe_failure(exc: BaseException) -> str:
    """A short account of a failure, every URL in it redacted (aiohttp puts some in messages)."""
    text = str(exc) if isinstance(exc, TransientError) else f"{type(exc).__name__}: {exc}".rstrip(": ")
    return redact(text)


async def retrying(
    operation: Callable[[], Awaitable[T]],
    *,
    what: str,
    retries: int,
    backoff_s: float,
    cap_s: float = MAX_DELAY_S,
) -> T:
    """Await `operation()`, again up to `retries` times on transient failures; then raise DownloadError.

    `what` names the thing fetched (with a public URL) for the log and the error. Anything not
    transient (an AccessError, a checksum mismatch, a 404) propagates at once.
    """
    transient = transient_errors()
    backoff = Backoff(initial_s=backoff_s, max_s=cap_s, max_attempts=retries + 1)
    for attempt in itertools.count(1):
        try:
            return await operation()
        except transient as exc:
            if backoff.exhausted(attempt):
                raise DownloadError(
                    f"{what}: failed after {attempt} attempts; last error: {describe_failure(exc)}"
                ) from exc
            delay = backoff.delay(attempt)
            logger.debug("%s: %s; retrying in %.2f s", what, describe_failure(exc), delay)
            await anyio.sleep(delay)
    raise AssertionError("unreachable")  # the loop returns or raises
