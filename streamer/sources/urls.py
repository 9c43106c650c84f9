"""Keep credentials out of everything a person or a log can read."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

MASK = "***"


def mask_url(url: str) -> str:
    """`rtsp://user:secret@host/x` -> `rtsp://user:***@host/x`; other text comes back unchanged."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{host}"))


def scrub(text: str, url: str) -> str:
    """`text` (an error message, say) with the URL's credentials masked wherever the URL appears."""
    password = urlsplit(url).password if "://" in url else None
    text = text.replace(url, mask_url(url))
    return text.replace(f":{password}@", f":{MASK}@") if password else text
