"""What lives under `[cluster] state_dir`, on storage every node sees:

    slot-<k>/                 one folder per worker slot (k is stable across restarts)
        <name>-<start>.jsonl  a JSONL (or video) sink's file, one per start of the slot: never replaced
        webhook-<i>/          the i-th sink's webhook spool, and mqtt-<i>/ an MQTT sink's (QoS 1/2):
                              a restarted or replacement worker for the slot replays them first
    owners/<source>.json      {"epoch": e, "slot": k}: who owns a source now (the coordinator writes it)
    checkpoints/<source>.json a file source's checkpoint (service/checkpoint.py's format, plus its epoch)

Fencing: each placement of a source raises its epoch. A worker runs a source only while the owner
file names its epoch; one that finds a higher epoch there (it was cut off and the source moved)
stops the source, and never writes that source's checkpoint again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import msgspec

from ..config.schema import (
    CallbackSinkConfig,
    Config,
    FileSourceConfig,
    JsonlSinkConfig,
    MqttSinkConfig,
    SinkConfig,
    SnapshotSinkConfig,
    SourceConfig,
    VideoSinkConfig,
    WebhookSinkConfig,
)
from ..errors import ConfigError
from ..service import checkpoint

Position = tuple[int, "float | None"]


def slot_dir(state_dir: str | Path, slot: int) -> Path:
    return Path(state_dir) / f"slot-{slot}"


def slot_config(config: Config, state_dir: str | Path, slot: int, start: str, cpus: float) -> Config:
    """The pipeline config a worker in `slot` runs: the fleet's model, stages and sinks, with every
    file and spool the sinks keep moved under the slot's folder; no server, no single-node checkpoint."""
    folder = slot_dir(state_dir, slot)
    sinks = [slot_sink(sink, folder, index, slot, start) for index, sink in enumerate(config.sinks)]
    model = config.model if config.model.workers else msgspec.structs.replace(config.model, workers=max(1, int(cpus)))
    run = msgspec.structs.replace(config.run, checkpoint=None)
    return msgspec.structs.replace(config, sinks=sinks, model=model, run=run, server=None, cluster=None)


def slot_sink(sink: SinkConfig, folder: Path, index: int, slot: int, start: str) -> SinkConfig:
    """`sink` writing under `folder`: files named per start of the slot, spools per slot."""
    if isinstance(sink, (JsonlSinkConfig, VideoSinkConfig)):
        name = Path(sink.path)
        return msgspec.structs.replace(sink, path=str(folder / f"{name.stem}-{start}{name.suffix}"))
    if isinstance(sink, SnapshotSinkConfig):
        return msgspec.structs.replace(sink, folder=str(folder / Path(sink.folder).name))
    # The slot's spools belong to whichever worker holds the slot now: it takes them over even from
    # a worker that was cut off but still runs (the spool fences that one off, sinks/spool.py).
    if isinstance(sink, WebhookSinkConfig):
        dead_letter = str(folder / f"webhook-{index}-dead-letter.jsonl") if sink.dead_letter_path else None
        return msgspec.structs.replace(sink, spool_dir=str(folder / f"webhook-{index}"), dead_letter_path=dead_letter,
                                       spool_takeover=True)
    if isinstance(sink, MqttSinkConfig):
        # Two clients with one id throw each other off the broker: each slot gets its own. QoS 1/2
        # results wait in a durable spool until acknowledged, so a killed worker loses none.
        client_id = f"{sink.client_id}-slot-{slot}" if sink.client_id else None
        spool = str(folder / f"mqtt-{index}") if sink.qos > 0 else None
        return msgspec.structs.replace(sink, client_id=client_id, spool_dir=spool, spool_takeover=sink.qos > 0)
    if isinstance(sink, CallbackSinkConfig):
        return sink
    raise TypeError(f"no slot layout for {type(sink).__name__}")


def check_fleet_config(config: Config, file: str | None = None) -> None:
    """ConfigError for what a fleet cannot honour: a sink or stage limited to named sources (a worker
    runs whichever sources it is given, so the names would not exist where the table is checked)."""
    for kind, tables in (("sinks", config.sinks), ("stages", config.stages)):
        for index, table in enumerate(tables):
            if getattr(table, "sources", None):
                raise ConfigError(
                    f"a cluster's {kind} take every source: remove `sources` (filter by the results' `source`"
                    " field in the receiver instead)", f"$.{kind}[{index}].sources", file,
                )


# ---- owners (fencing) -------------------------------------------------------------------------


def owner_path(state_dir: str | Path, source_id: str) -> Path:
    return Path(state_dir) / "owners" / f"{source_id}.json"


def write_owner(state_dir: str | Path, source_id: str, epoch: int, slot: int) -> None:
    write_json(owner_path(state_dir, source_id), {"epoch": epoch, "slot": slot})


def owner_epoch(state_dir: str | Path, source_id: str) -> int:
    """The epoch of the source's current placement (0 if none was written, or it cannot be read)."""
    try:
        return int(json.loads(owner_path(state_dir, source_id).read_text())["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


# ---- per-source checkpoints -------------------------------------------------------------------


def checkpoint_path(state_dir: str | Path, source_id: str) -> Path:
    return Path(state_dir) / "checkpoints" / f"{source_id}.json"


def resumable(source: SourceConfig) -> bool:
    return isinstance(source, FileSourceConfig) and not source.loop


def load_position(state_dir: str | Path, source: SourceConfig) -> Position | None:
    """Where an earlier owner of this file source stopped (as service/checkpoint.py reads it)."""
    if not resumable(source):
        return None
    positions = checkpoint.load(checkpoint_path(state_dir, source.id), Config(sources=[source])) or {}  # type: ignore[arg-type]
    return positions.get(source.id)  # type: ignore[arg-type]


def save_position(state_dir: str | Path, source: FileSourceConfig, position: Position, epoch: int) -> None:
    stat = os.stat(source.path)
    entry = {"path": source.path, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "index": position[0], "pts": position[1]}
    write_json(checkpoint_path(state_dir, source.id), {"version": checkpoint.VERSION, "epoch": epoch, "sources": {source.id: entry}})


def write_json(path: Path, document: dict[str, Any]) -> None:
    """Replace `path` atomically (a reader sees the old document or the new one, never half)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "w") as file:
        json.dump(document, file)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
