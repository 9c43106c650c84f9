"""Read a config from TOML (or a dict, or a Config) and check what one field cannot check alone."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from ..errors import ConfigError
from .schema import Config, FileSourceConfig, SourceConfig, VideoSinkConfig

_AT_PATH = re.compile(r"^(?P<message>.*?)(?: - at `(?P<path>[^`]*)`)?$", re.DOTALL)
_UNKNOWN_FIELD = re.compile(r"^Object contains unknown field `(?P<key>[^`]*)`$")
_MISSING_FIELD = re.compile(r"^Object missing required field `(?P<key>[^`]*)`$")
_NOT_IN_AN_ID = re.compile(r"[^A-Za-z0-9._-]+")
T = TypeVar("T", bound=msgspec.Struct)
ID_RULE = "an id is 1 to 64 letters, digits, '.', '_' or '-', and starts with a letter or a digit"


def load_config(source: str | Path | dict[str, Any] | Config) -> Config:
    """Return a checked Config from a TOML file path, a mapping, or a Config built in Python."""
    if isinstance(source, Config):
        return _checked(_convert(msgspec.to_builtins(source), file=None))
    if isinstance(source, dict):
        return _checked(_convert(source, file=None))
    path = Path(source)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config file: {exc.strerror}", file=str(path)) from exc
    return _checked(_decode_toml(raw, file=str(path)), file=str(path))


def source_config(source: SourceConfig | dict[str, Any], taken: set[str]) -> SourceConfig:
    """One checked source table (for sources added at run time), named without clashing with `taken`."""
    data = msgspec.to_builtins(source) if not isinstance(source, dict) else source
    try:
        config: SourceConfig = msgspec.convert(data, type=SourceConfig)
    except msgspec.ValidationError as exc:
        raise _config_error(str(exc).replace("`$", "`$.source"), None) from exc
    if config.id is not None and config.id in taken:
        raise ConfigError(f"source id {config.id!r} is already running", "$.source.id")
    if config.id is None:
        config.id = _default_source_id(config, len(taken), taken)
    return config


def checked_struct(config: T, key_path: str = "$") -> T:
    """`config` (any config struct, such as a JsonlSinkConfig built in Python) checked as if it had
    been read from TOML at `key_path`: a bad value is the same ConfigError, naming the same key."""
    try:
        return msgspec.convert(msgspec.to_builtins(config), type=type(config))
    except msgspec.ValidationError as exc:
        raise _config_error(str(exc).replace("`$", f"`{key_path}", 1), None) from exc


def configured(kind: type[T], config: T | None, options: dict[str, Any], key_path: str = "$") -> T:
    """What a runtime class built from Python works from: its `config` struct, or one made of keyword
    `options` (never both), checked like TOML so its defaults and limits are the struct's alone. A
    path given as a `Path` is taken as the string TOML would hold."""
    if config is not None and options:
        raise ConfigError(f"give a {kind.__name__} or keyword options, not both", key_path)
    if config is None:
        fields = {key: os.fspath(value) if isinstance(value, os.PathLike) else value for key, value in options.items()}
        try:
            config = kind(**fields)
        except (TypeError, ValueError) as exc:  # an unknown or missing keyword, or a check across keys
            raise ConfigError(f"{kind.__name__}: {exc}", key_path) from exc
    return checked_struct(config, key_path)


def _decode_toml(raw: bytes, file: str) -> Config:
    try:
        return msgspec.toml.decode(raw, type=Config)
    except msgspec.ValidationError as exc:
        raise _config_error(str(exc), file) from exc
    except msgspec.DecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", file=file) from exc


def _convert(data: dict[str, Any], file: str | None) -> Config:
    try:
        return msgspec.convert(data, type=Config)
    except msgspec.ValidationError as exc:
        raise _config_error(str(exc), file) from exc


def _config_error(text: str, file: str | None) -> ConfigError:
    """Turn msgspec's 'message - at `$.a[0]`' into an error whose path names the bad key itself."""
    match = _AT_PATH.match(text)
    message, path = match.group("message"), match.group("path") or "$"  # type: ignore[union-attr]
    if unknown := _UNKNOWN_FIELD.match(message):
        key = unknown.group("key")
        return ConfigError(f"unknown key {key!r}: remove it or check its spelling", f"{path}.{key}", file)
    if missing := _MISSING_FIELD.match(message):
        key = missing.group("key")
        return ConfigError(f"required key {key!r} is missing", f"{path}.{key}", file)
    if path.endswith(".id") and "matching regex" in message:
        return ConfigError(ID_RULE, path, file)
    return ConfigError(message[0].lower() + message[1:], path, file)


def _checked(config: Config, file: str | None = None) -> Config:
    """Give every source an id, then check the references between tables."""
    ids = _assign_source_ids(config, file)
    for i, stage in enumerate(config.stages):
        for j, name in enumerate(getattr(stage, "sources", None) or []):
            if name not in ids:
                raise ConfigError(f"no source has id {name!r} (ids: {ids})", f"$.stages[{i}].sources[{j}]", file)
    for i, sink in enumerate(config.sinks):
        for j, name in enumerate(sink.sources or []):
            if name not in ids:
                raise ConfigError(f"no source has id {name!r} (ids: {ids})", f"$.sinks[{i}].sources[{j}]", file)
        if isinstance(sink, VideoSinkConfig) and len(sink.sources or ids) != 1:
            raise ConfigError(
                "a video sink records exactly one source: set `sources = [\"<id>\"]`", f"$.sinks[{i}].sources", file
            )
    return config


def _assign_source_ids(config: Config, file: str | None) -> list[str]:
    """Check the ids the user wrote are unique, then name the others without clashing."""
    taken: set[str] = set()
    for i, source in enumerate(config.sources):
        if source.id is not None and source.id in taken:
            raise ConfigError(f"source id {source.id!r} is used twice", f"$.sources[{i}].id", file)
        if source.id is not None:
            taken.add(source.id)
    for i, source in enumerate(config.sources):
        if source.id is None:
            source.id = _default_source_id(source, i, taken)
            taken.add(source.id)
    return [source.id for source in config.sources]  # type: ignore[misc]


def _default_source_id(source: object, index: int, taken: set[str]) -> str:
    """The file's stem made an id (or `lavfi<index>`), with `-2`, `-3` ... added only while that name is taken."""
    if isinstance(source, FileSourceConfig):
        base = _NOT_IN_AN_ID.sub("-", Path(source.path).stem).strip("-._")[:56] or f"file{index}"
    else:
        base = f"{type(source).__name__.removesuffix('SourceConfig').lower()}{index}"
    name, suffix = base, 2
    while name in taken:
        name, suffix = f"{base}-{suffix}", suffix + 1
    return name
