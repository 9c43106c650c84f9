"""What a PyAV failure means for a source, decided in one place.

Opening: only a definite refusal fails a live source at once, since no retry can fix it. Anything
else (a timeout, a reset, garbage, an early end) is an outage the source reconnects from, with
backoff. Files and patterns have no outages: every failure to open one is final.

    refusal                              what PyAV raises
    no such file or device               FileNotFoundError (av.error.FileNotFoundError is one)
    permission denied (a local path)     PermissionError
    credentials refused (401, 403)       av.error.HTTPUnauthorizedError, av.error.HTTPForbiddenError
    no such stream (404)                 av.error.HTTPNotFoundError
    not supported by this FFmpeg         av.error.{Demuxer,Decoder,Protocol,Filter,Option}NotFoundError,
                                         av.error.PatchWelcomeError
    unknown format (no v4l2, say)        a ValueError that is not an av.error.FFmpegError

Over a network (a URL with a scheme) a PermissionError is no refusal: FFmpeg's RTSP client answers
EPERM ("Operation not permitted") for a server reply it has no better code for, as a GStreamer
server gives while a shared mount is torn down; the server's real refusals are the 401/403/404 rows.

PyAV 18's `av.error.InvalidDataError` is a `ValueError` too, on purpose NOT a refusal: FFmpeg
raises it for a server that accepts and then says nothing, for a frozen camera and for garbage, and
all of these recover. A failure that took the whole timeout says so ("no answer within
open_timeout_s=10", "no frame within read_timeout_s=10") rather than FFmpeg's "Invalid data found".
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING

from ..errors import SourceDecodeError, SourceError, SourceOpenError, SourceRefusedError, SourceStalledError

if TYPE_CHECKING:
    from .av_source import AvSource

# A failure that took this share of its timeout (or more) is taken for the timeout.
TIMED_OUT_SHARE = 0.9


@functools.cache
def _refusals() -> tuple[tuple[tuple[type[BaseException], ...], str], ...]:
    """(exception types, what to say), first match wins; the unknown-format row is `_unknown_format`."""
    import av

    error = av.error
    return (
        ((FileNotFoundError,), "no such file or device"),
        ((PermissionError,), "permission denied"),
        ((error.HTTPUnauthorizedError, error.HTTPForbiddenError), "credentials refused"),
        ((error.HTTPNotFoundError,), "no such stream (404)"),
        ((error.DemuxerNotFoundError, error.DecoderNotFoundError, error.ProtocolNotFoundError,
          error.FilterNotFoundError, error.OptionNotFoundError, error.PatchWelcomeError),
         "not supported by this FFmpeg"),
    )


def _unknown_format(exc: BaseException) -> bool:
    """PyAV's own "no container format 'x'": a plain ValueError, unlike FFmpeg's InvalidDataError."""
    import av

    return isinstance(exc, ValueError) and not isinstance(exc, av.error.FFmpegError)


def refusal(exc: BaseException, network: bool = False) -> str | None:
    """What a definite refusal says, or None when `exc` is not one (`network`: the source is a URL)."""
    if _unknown_format(exc):
        return "unknown format"
    says = next((says for types, says in _refusals() if isinstance(exc, types)), None)
    return None if network and says == "permission denied" else says


def open_failure(
    exc: BaseException, source: AvSource, detail: str, elapsed_s: float, format_hint: str = ""
) -> SourceError:
    """The error for a failed open of `source` that took `elapsed_s`; `detail` is the exception's
    text, credentials already scrubbed; `format_hint` (how to get the format) ends an unknown format's."""
    says = refusal(exc, network="://" in source.url)
    if says is not None:
        hint = format_hint if _unknown_format(exc) else ""
        return SourceRefusedError(f"{source.describe()}: {says}: {detail}{hint}")
    if not source.live:
        if _is_empty_file(source.url):
            return SourceRefusedError(f"{source.describe()}: empty file")
        return SourceRefusedError(f"{source.describe()}: cannot open it: {detail}")
    if _timed_out(exc, elapsed_s, source.open_timeout_s):
        timeout = f"open_timeout_s={source.open_timeout_s:g}"
        return SourceOpenError(f"{source.describe()}: no answer within {timeout} ({detail})")
    return SourceOpenError(f"{source.describe()}: cannot open it: {detail}")


def read_failure(exc: BaseException, source: AvSource, detail: str, silent_s: float) -> SourceError:
    """The error for a read that failed `silent_s` after the last frame (live sources reconnect)."""
    if source.live and _timed_out(exc, silent_s, source.read_wait_s):  # see AvSource._open_container
        return stalled(source, silent_s)
    return SourceDecodeError(f"{source.describe()}: reading failed: {detail}")


def stalled(source: AvSource, silent_s: float) -> SourceStalledError:
    return SourceStalledError(
        f"{source.describe()}: no frame within read_timeout_s={source.read_timeout_s:g} (none for {silent_s:.1f} s)"
    )


def _timed_out(exc: BaseException, elapsed_s: float, timeout_s: float) -> bool:
    """PyAV's interrupt (ExitError) is its timeout; RTSP reports one as InvalidData, so time tells."""
    import av

    return isinstance(exc, av.error.ExitError) or elapsed_s >= timeout_s * TIMED_OUT_SHARE


def _is_empty_file(path: str) -> bool:
    try:
        return os.path.isfile(path) and os.path.getsize(path) == 0
    except (OSError, ValueError):
        return False
