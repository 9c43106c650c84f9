"""Log output: human-readable lines by default, one JSON object per line with `--log-format json`.

Either way every line goes through `redact` last, so a URL with a secret that slipped into a
message, an extra field or a traceback is masked.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone
from types import TracebackType

from ..redact import redact

# Attributes every LogRecord has; anything else was passed with `extra=` and goes into the JSON.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """`{"time", "level", "logger", "message", ...extra fields, "error"}` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        entry.update({key: _redacted(value) for key, value in vars(record).items() if key not in _STANDARD})
        if record.exc_info:
            entry["error"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message`, redacted."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def _redacted(value: object) -> object:
    return redact(value) if isinstance(value, str) else value


def configure_logging(level: str = "warning", format: str = "text") -> None:
    """Send streamer's (and every library's) logs to stderr at `level`, as text or JSON lines.

    Python warnings become log records too; with JSON, so does an uncaught exception's traceback,
    so that every line on stderr is one JSON object."""
    handler = logging.StreamHandler(sys.stderr)
    if format == "json":
        handler.setFormatter(JsonFormatter())
        sys.excepthook = _log_uncaught
    else:
        handler.setFormatter(TextFormatter())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    logging.captureWarnings(True)


def _log_uncaught(kind: type[BaseException], error: BaseException, traceback: TracebackType | None) -> None:
    logging.getLogger("streamer").critical("uncaught %s: %s", kind.__name__, error, exc_info=(kind, error, traceback))
