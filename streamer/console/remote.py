"""`streamer status [URL]`: a running daemon's GET /status, read over HTTP (the standard library's client).

The address is the URL given, else the `[server]` table of `--config FILE`, else the server's
defaults (ServerConfig: 127.0.0.1:9464). The token, for a server with `token_env`, comes from an
environment variable, never from the command line (where `ps` would show it).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from ..config.schema import ServerConfig
from ..errors import StatusError

DEFAULT_TOKEN_ENV = "STREAMER_ADMIN_TOKEN"
TIMEOUT_S = 5.0
WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1"}  # listening on every address: ask this machine's


def server_url(config: ServerConfig | None = None) -> str:
    """Where a server with `config` (the defaults when None) is reached from this machine."""
    config = config or ServerConfig()
    host = WILDCARDS.get(config.host, config.host)
    return f"http://{f'[{host}]' if ':' in host else host}:{config.port}"


def status_url(url: str) -> str:
    """`url`'s /status: a scheme is added when missing, a path ending in /status is kept."""
    if "://" not in url:
        url = f"http://{url}"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise StatusError(f"{url!r} is not a daemon's address; give one such as http://127.0.0.1:9464")
    path = parts.path.rstrip("/")
    return f"{parts.scheme}://{parts.netloc}{path if path.endswith('/status') else path + '/status'}"


def token_from(variable: str | None) -> str | None:
    """The token in `variable` (default STREAMER_ADMIN_TOKEN), None when it is unset or empty."""
    return os.environ.get(variable or DEFAULT_TOKEN_ENV, "").strip() or None


def read_status(url: str, token: str | None = None, timeout_s: float = TIMEOUT_S) -> dict[str, Any]:
    """The daemon's status body; StatusError when nothing answers, the request is refused, or it is no status."""
    address = status_url(url)
    headers = {"Accept": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # one's own daemon: never via a proxy
    try:
        with opener.open(urllib.request.Request(address, headers=headers), timeout=timeout_s) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise StatusError(_refused(address, exc, token is not None)) from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise StatusError(f"nothing answers at {address} ({reason}): is `streamer run` running there, with a"
                          " [server] table?") from exc
    except ValueError as exc:
        raise StatusError(f"{address} answered with something that is not JSON: not a streamer server?") from exc
    if not isinstance(body, dict) or not isinstance(body.get("sources"), list):
        raise StatusError(f"{address} answered JSON without a list of sources: not a streamer server?")
    return body


def _refused(address: str, error: urllib.error.HTTPError, sent_token: bool) -> str:
    try:
        message = json.loads(error.read()).get("error", "")
    except (ValueError, AttributeError, OSError):
        message = ""
    if error.code == 401:
        hint = "the token sent was refused" if sent_token else f"set the token in ${DEFAULT_TOKEN_ENV} or the variable --token-env names"
        return f"{address}: HTTP 401, the server needs its admin token: {hint}"
    return f"{address}: HTTP {error.code}" + (f": {message}" if message else "")


def address_of(url: str | None, config_path: str | None, token_env: str | None) -> tuple[str, str | None]:
    """The URL and token `streamer status` uses: the URL given, or the config's [server], or the default."""
    server = None
    if config_path is not None:
        from ..config import load_config

        server = load_config(config_path).server
        if server is None and url is None:
            raise StatusError(f"{config_path} has no [server] table: its daemon serves no /status; give the URL")
    return url or server_url(server), token_from(token_env or (server.token_env if server else None))


def show_status(url: str, token: str | None, *, as_json: bool = False, watch_s: float | None = None) -> None:
    """Print the daemon's status (as tables, or its JSON); with `watch_s`, redraw it that often until Ctrl-C."""
    from rich.console import Console
    from rich.live import Live

    from .tables import status_view

    if as_json:
        print(json.dumps(read_status(url, token), indent=2))
        return
    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 160))  # a pipe: no line cut at 80 columns
    if watch_s is None:
        console.print(status_view(read_status(url, token)))
        return
    import time

    with Live(status_view(read_status(url, token)), console=console, auto_refresh=False) as live:
        while True:
            time.sleep(watch_s)
            live.update(status_view(read_status(url, token)), refresh=True)
