"""A status body (`GET /status`, built by service/status.py) as rich renderables.

    console.print(status_view(body))        # the model line, the sources table, the sinks table

Sources: state, fps in (read) and out (processed), frames dropped by reason (the reasons of
`streamer_source_frames_dropped_total`), reconnects, capture -> result latency p50/p99, queue.
Sinks: written, queued, failed, dropped. The stream's internal topic sink is left out.
"""

from __future__ import annotations

import re
from typing import Any, Iterable

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ..service.status import RESULTS_SINK

STATE_STYLES = {"running": "bright_green", "connecting": "yellow", "reconnecting": "yellow", "paused": "cyan",
                "ended": "dim", "failed": "bold red"}
# reason -> the status key that counts it (the reasons are the metrics' labels)
DROP_KEYS = (("queue_full", "dropped"), ("stale", "stale"), ("max_fps", "over_max_fps"), ("paused", "paused_frames"),
             ("behind_live", "behind_live"))
NONE = "-"
_OWN_NAME = re.compile(r"\Asource '[^']*' \([^)]*\): ")


def status_view(body: dict[str, Any], *, without: Iterable[str] = ()) -> Group:
    """The model line, a table of the sources (but those in `without`, e.g. shown as bars) and of the sinks."""
    left_out = set(without)
    sources = [source for source in body.get("sources", []) if source.get("id") not in left_out]
    parts: list[RenderableType] = [overview(body)]
    if sources:
        parts += [sources_table(sources), *error_lines(sources)]
    sinks = [sink for sink in body.get("sinks", []) if sink.get("name") != RESULTS_SINK]
    if sinks:
        parts.append(sinks_table(sinks))
    return Group(*parts)


def overview(body: dict[str, Any]) -> Text:
    """`model centerface (onnxruntime) · up 0:01:05 · 1234 frames · 56 detections · 3 events`."""
    model = body.get("model") or {}
    line = Text()
    line.append("model ", style="dim").append(str(model.get("id", "?")), style="bold")
    line.append(f" ({model.get('backend', '?')})", style="dim")
    line.append(f" · up {_duration(body.get('uptime_s', 0.0))} · ", style="dim")
    line.append(f"{body.get('frames', 0)} frames · {body.get('detections', 0)} detections")
    if body.get("events"):
        line.append(f" · {body['events']} events")
    if body.get("stopping"):
        line.append(" · stopping", style="yellow")
    return line


SOURCE_COLUMNS = (("source", "left"), ("state", "left"), ("fps in", "right"), ("fps out", "right"), ("drops", "left"),
                  ("reconnects", "right"), ("p50/p99 ms", "right"), ("queue", "right"))


def sources_table(sources: list[dict[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold", show_edge=False)
    for name, justify in SOURCE_COLUMNS:
        table.add_column(name, justify=justify, no_wrap=name != "drops")  # type: ignore[arg-type]
    for source in sources:
        table.add_row(
            Text(str(source.get("id")), style="bold"),
            state_text(source.get("state", "connecting")),
            _rate(source.get("fps_in")),
            _rate(source.get("fps")),
            drops_text(source),
            str(source.get("reconnects", 0)),
            latency_text(source.get("latency_ms")),
            str(source.get("queue_depth", 0)),
        )
    return table


def error_lines(sources: list[dict[str, Any]]) -> list[Text]:
    """`gate: cannot open it: ...` for each source that failed or is reconnecting, cut to one line."""
    errors = [(source.get("id"), _error_of(source)) for source in sources]
    return [Text(f"{source_id}: {error}", style="red", no_wrap=True, overflow="ellipsis")
            for source_id, error in errors if error]


def sinks_table(sinks: list[dict[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold", show_edge=False)
    for name, justify in (("sink", "left"), ("written", "right"), ("queued", "right"), ("failed", "right"),
                          ("dropped", "right")):
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for sink in sinks:
        failed = int(sink.get("failed", 0))
        table.add_row(str(sink.get("name")), str(sink.get("written", 0)), str(sink.get("queue_depth", 0)),
                      Text(str(failed), style="bold red" if failed else ""), str(sink.get("dropped", 0)))
    return table


def state_text(state: str) -> Text:
    return Text(state, style=STATE_STYLES.get(state, ""))


def drops_text(source: dict[str, Any]) -> str:
    """`queue_full 3, max_fps 40`: the non-zero drop counts by reason, or `-`."""
    counts = [(reason, int(source.get(key) or 0)) for reason, key in DROP_KEYS]
    return ", ".join(f"{reason} {count}" for reason, count in counts if count) or NONE


def latency_text(latency: dict[str, float] | None) -> str:
    if not latency:
        return NONE
    return f"{latency['p50']:.0f}/{latency['p99']:.0f}"


def _rate(fps: float | None) -> str:
    return NONE if fps is None else f"{fps:.1f}"


def _error_of(source: dict[str, Any]) -> str | None:
    """What went wrong, where it matters now: a failure, or the reason of a reconnect in progress
    (without the `source 'id' (type 'url'): ` the message starts with: the row names the source)."""
    error = source.get("error") or (source.get("last_error") if source.get("state") == "reconnecting" else None)
    return _OWN_NAME.sub("", str(error), count=1) if error else None


def _duration(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"
