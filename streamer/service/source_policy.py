"""What a source added through the admin API may make FFmpeg read: `[server.api_sources]`.

The config file and its author are trusted; an API client is not. So `POST /sources` checks each
table here before it starts: a file only under `file_roots` (symlinks and `..` resolved first), a
lavfi graph only as one allowed generator with `key=value` options from its list (no filter that
reads or writes a file, no chains), `options` only from `ffmpeg_options`, URLs only rtsp(s) or
http(s), webcams only `/dev/videoN` and only with `webcams = true`. Anything this module cannot
prove harmless is refused with a SourcePolicyError naming the key and the setting that would allow it.
"""

from __future__ import annotations

import os
import re
from typing import NoReturn
from urllib.parse import urlsplit

from ..config.schema import (
    ApiSourcesConfig, FileSourceConfig, HlsSourceConfig, LavfiSourceConfig, LiveSourceConfigBase, RtspSourceConfig, SourceConfig, WebcamSourceConfig,
)  # fmt: skip
from ..errors import SourcePolicyError

_SIZE_RATE = frozenset({"size", "s", "rate", "r"})
_TIMING = frozenset({"rate", "r", "duration", "d", "sar"})
_COMMON = _SIZE_RATE | _TIMING
_CELLS = _SIZE_RATE | {"rule", "random_fill_ratio", "ratio", "random_seed", "seed", "stitch"}
# The options each generator may take (its `filename` and positional values never).
GENERATOR_OPTIONS: dict[str, frozenset[str]] = {
    "testsrc": _COMMON | {"decimals", "n"},
    "testsrc2": _COMMON | {"alpha"},
    "smptebars": _COMMON,
    "smptehdbars": _COMMON,
    "pal75bars": _COMMON,
    "pal100bars": _COMMON,
    "rgbtestsrc": _COMMON | {"complement", "co"},
    "yuvtestsrc": _COMMON,
    "color": _COMMON | {"color", "c"},
    "allrgb": _TIMING,
    "allyuv": _TIMING,
    "haldclutsrc": _TIMING | {"level"},
    "colorspectrum": _COMMON | {"type"},
    "colorchart": _TIMING | {"patch_size", "preset"},
    "mandelbrot": _SIZE_RATE | {
        "maxiter", "start_x", "start_y", "start_scale", "end_scale", "end_pts", "bailout",
        "morphxf", "morphyf", "morphamp", "outer", "inner",
    },
    "life": _CELLS | {"mold", "life_color", "death_color", "mold_color"},
    "cellauto": _CELLS | {"scroll", "start_full", "full"},
    "gradients": _SIZE_RATE | {f"c{i}" for i in range(8)} | {
        "x0", "y0", "x1", "y1", "nb_colors", "n", "seed", "duration", "d", "speed", "type", "t",
    },
    "sierpinski": _SIZE_RATE | {"seed", "jump", "type"},
}  # fmt: skip
_GRAPH = re.compile(r"(?P<name>[a-z0-9_]+)(?:=(?P<options>.*))?", re.DOTALL)
# A value is plain text: no quote, escape, `,` `;` `[` or `:`, which would start another option or filter.
_OPTION = re.compile(r"(?P<key>[a-z0-9_]+)=[A-Za-z0-9._+\-/@#]+")
_URL_LIKE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
_VIDEO_DEVICE = re.compile(r"/dev/video[0-9]+")
_SCHEMES = {RtspSourceConfig: ("rtsp", "rtsps"), HlsSourceConfig: ("http", "https")}
_ALLOW = "[server.api_sources]"


def check_api_source(config: SourceConfig, policy: ApiSourcesConfig) -> SourceConfig:
    """`config` if the API may add it (a file's path then resolved); SourcePolicyError otherwise."""
    if isinstance(config, FileSourceConfig):
        config.path = allowed_path(config.path, policy.file_roots)
    elif isinstance(config, LavfiSourceConfig):
        check_graph(config.graph, policy.lavfi_filters)
    elif isinstance(config, WebcamSourceConfig):
        _check_device(config.device, policy.webcams)
    else:
        _check_scheme(config)
    if isinstance(config, LiveSourceConfigBase):
        _check_options(config.options, policy.ffmpeg_options)
    return config


def allowed_path(path: str, roots: list[str]) -> str:
    """The real path of `path` if it lies under one of `roots` (resolved the same way)."""
    if _URL_LIKE.match(path):
        _refuse("path", f"{path!r} is a URL or an FFmpeg protocol, not a file path", "the config file may have it")
    real = os.path.realpath(path)
    if not any(_inside(real, os.path.realpath(root)) for root in roots):
        where = f"under {roots}" if roots else "anywhere (file_roots is empty)"
        _refuse("path", f"{path!r} resolves to {real!r}, and the API may read files only {where}",
                f"list its folder in {_ALLOW} file_roots")
    return real


def check_graph(graph: str, allowed: list[str]) -> None:
    """Refuse any graph that is not one allowed generator with `key=value` options from its list."""
    match = _GRAPH.fullmatch(graph)
    if match is None or match["name"] not in GENERATOR_OPTIONS:
        _refuse("graph", f"{graph!r} is not one generator filter (such as testsrc2=size=640x360:rate=15) from {_ALLOW} lavfi_filters",
                "the config file may have it")
    name = match["name"]
    if name not in allowed:
        _refuse("graph", f"the generator {name!r} is not allowed", f"add it to {_ALLOW} lavfi_filters")
    options = match["options"]
    for option in options.split(":") if options is not None else ():
        _check_graph_option(name, option)


def _check_graph_option(name: str, option: str) -> None:
    match = _OPTION.fullmatch(option)
    if match is None:
        _refuse("graph", f"{name} option {option!r} is not a plain key=value", "write each option as key=value")
    if match["key"] not in GENERATOR_OPTIONS[name]:
        _refuse("graph", f"{name} may not take the option {match['key']!r} through the API; it takes "
                f"{sorted(GENERATOR_OPTIONS[name])}", "the config file may have it")


def _check_device(device: str, webcams: bool) -> None:
    if not webcams:
        _refuse("device", "the API may not open webcams", f"set {_ALLOW} webcams = true")
    if not _VIDEO_DEVICE.fullmatch(device):
        _refuse("device", f"{device!r} is not a /dev/videoN device", "the config file may have it")


def _check_scheme(config: SourceConfig) -> None:
    url = getattr(config, "url", "")
    schemes = _SCHEMES.get(type(config), ())
    if urlsplit(url).scheme.lower() not in schemes:
        _refuse("url", f"the API takes only {'/'.join(schemes) or 'no'} URLs for this type", "the config file may have it")


def _check_options(options: dict[str, str], allowed: list[str]) -> None:
    for key in options:
        if key not in allowed:
            _refuse(f"options.{key}", f"the API may not set the FFmpeg option {key!r}",
                    f"add it to {_ALLOW} ffmpeg_options (never protocol_whitelist or protocol_blacklist)")


def _inside(path: str, root: str) -> bool:
    return os.path.commonpath([path, root]) == root


def _refuse(key: str, why: str, fix: str) -> NoReturn:
    raise SourcePolicyError(f"{why} (refused for a source added through the API; {fix})", f"$.source.{key}")
