"""Keep secrets out of everything a person or a log can read: the one place that masks them.

`redact_url` masks a URL's whole user-info (`rtsp://user:pw@host/x` and `rtsp://TOKEN@host/x`
both become `rtsp://***@host/x`) and the values of query (and fragment) parameters whose names look
secret (`?token=***&channel=2`). `redact` does the same to every URL inside a free text, such as
FFmpeg's or aiohttp's error messages, and masks the known secret values it is given wherever they
appear (FFmpeg may echo a URL in pieces or percent-decoded). Every log line, error, summary,
`/status` field, metric label and JSONL field that can carry a URL goes through one of the two.
This module imports nothing of streamer, so every layer may import it.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

MASK = "***"
SECRET_NAME_PARTS = (
    "token", "key", "pass", "pwd", "secret", "sig", "auth", "credential", "session", "cookie", "jwt",
)  # fmt: skip
SHORTEST_KNOWN_SECRET = 4  # masking shorter strings everywhere would garble the text, not protect it

URL_PATTERN = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")
_USER_INFO = re.compile(r"^(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<info>[^/?#]*)@")
_PARAMETER = re.compile(r"(?P<lead>[?&;#])(?P<name>[^=&;#?]+)=(?P<value>[^&;#]*)")
_LOOSE_PARAMETER = re.compile(r"(?P<lead>(?<![\w.-]))(?P<name>[\w.-]+)=(?P<value>[^\s&;#'\",)]+)")


def looks_secret(name: str) -> bool:
    """Whether a parameter named so probably holds a secret (`api_key`, `X-Amz-Signature`, `sessionid`)."""
    lowered = unquote(name).lower()
    return any(part in lowered for part in SECRET_NAME_PARTS)


def redact_url(url: str) -> str:
    """The URL with its user-info and its secret-looking parameter values replaced by `***`."""
    url = _USER_INFO.sub(lambda match: f"{match['scheme']}{MASK}@", url, count=1)
    return _PARAMETER.sub(_masked_parameter, url)


def redact(text: str, *urls: str | None) -> str:
    """`text` with every URL in it redacted, loose `token=...` pairs masked, and every secret that
    one of `urls` carries (its user-info, its secret parameter values) masked wherever it appears."""
    text = URL_PATTERN.sub(lambda match: redact_url(match.group(0)), text)
    text = _LOOSE_PARAMETER.sub(_masked_parameter, text)
    for secret in sorted({secret for url in urls if url for secret in secrets_in_url(url)}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def secrets_in_url(url: str) -> set[str]:
    """The secret pieces of a URL, raw and percent-decoded: user, password, secret parameter values."""
    pieces: list[str] = []
    user_info = _USER_INFO.match(url)
    if user_info:
        info = user_info["info"]
        user, _, password = info.partition(":")
        pieces += [info, password] if password else [user]  # a user with a password is a name, not a secret
    pieces += [match["value"] for match in _PARAMETER.finditer(url) if looks_secret(match["name"])]
    decoded = [unquote(piece) for piece in pieces]
    return {piece for piece in pieces + decoded if len(piece) >= SHORTEST_KNOWN_SECRET}


def _masked_parameter(match: re.Match[str]) -> str:
    if not looks_secret(match["name"]) or not match["value"]:
        return match.group(0)
    return f"{match['lead']}{match['name']}={MASK}"
