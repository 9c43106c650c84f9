"""SIGHUP: re-read the config file and apply what can change without a restart (the sources)."""

from __future__ import annotations

import logging
from pathlib import Path

from ..config import Config, load_config
from ..errors import ConfigError, StreamerError
from ..pipeline.runner import Stream

log = logging.getLogger("streamer.reload")

RESTART_ONLY = ("model", "batching", "stages", "sinks", "server", "run")


def reload_sources(stream: Stream, path: str | Path) -> bool:
    """Start sources the file added, stop those it removed, restart those it changed.

    A config that does not load is refused as a whole: the error is logged and everything keeps
    running as it was. Changes to other tables are logged as needing a restart. Returns whether
    the new config was applied.
    """
    try:
        new = load_config(path)
    except ConfigError as exc:
        log.error("reload: %s is invalid, keeping the running config: %s", path, exc)
        return False
    running = dict(stream.sources.configs)
    wanted = {source.id: source for source in new.sources}
    removed = [id for id in running if id not in wanted]
    changed = [id for id in running if id in wanted and wanted[id] != running[id]]
    added = [id for id in wanted if id not in running]
    for source_id in removed + changed:
        stream.remove_source(source_id)
    for source_id in changed + added:
        try:
            stream.add_source(wanted[source_id])
        except StreamerError as exc:  # e.g. the pipeline is stopping
            log.error("reload: cannot start source %s: %s", source_id, exc)
    _warn_restart_only(stream.config, new)
    log.info("reload: %d sources added, %d removed, %d restarted with new settings", len(added), len(removed), len(changed))
    return True


def _warn_restart_only(old: Config, new: Config) -> None:
    for table in RESTART_ONLY:
        if getattr(old, table) != getattr(new, table):
            log.warning("reload: [%s] changed; restart streamer to apply it (the running one is kept)", table)
