"""A model registry over HTTP: `GET {base}/models/{model id}.json` answers with a ModelDocument.

The base URL and an optional bearer token come from the arguments or from `STREAMER_REGISTRY_URL`
and `STREAMER_REGISTRY_TOKEN`. The token goes only to the registry's own origin, and never into a
log line, an error message or a repr.
"""

from __future__ import annotations

import logging
import os
from urllib.parse import quote, urljoin, urlsplit

import aiohttp
import msgspec
import yarl

from ...errors import AccessError, DownloadError, PackageError, ParameterError, UnsafePathError
from ...redact import redact_url
from ..entities import FileSpec, ModelDocument, ModelPackage
from ..retry import TransientError, retrying
from .base import REGISTRY_URL_VARIABLE

logger = logging.getLogger("streamer.engine")

URL_VARIABLE = REGISTRY_URL_VARIABLE
TOKEN_VARIABLE = "STREAMER_REGISTRY_TOKEN"
TIMEOUT = aiohttp.ClientTimeout(total=60, sock_connect=30)


class HttpRegistryProvider:
    """A WeightsProvider backed by an HTTP registry of JSON model documents."""

    name = "registry"

    def __init__(
        self, base_url: str | None = None, token: str | None = None, *, retries: int = 3, backoff_s: float = 0.5
    ) -> None:
        base_url = base_url or os.environ.get(URL_VARIABLE)
        if not base_url:
            raise ParameterError(f"no model registry URL: pass registry_url or set {URL_VARIABLE}")
        if urlsplit(base_url).scheme.lower() not in ("http", "https"):
            raise ParameterError(f"model registry URL {redact_url(base_url)!r} is not an http(s):// URL")
        self.base_url = base_url.rstrip("/")
        self._token = token or os.environ.get(TOKEN_VARIABLE) or None
        self.retries = retries
        self.backoff_s = backoff_s

    def __repr__(self) -> str:
        token = "'***'" if self._token else "None"
        return f"HttpRegistryProvider(base_url={redact_url(self.base_url)!r}, token={token})"

    def document_url(self, model_id: str) -> str:
        """`{base}/models/{id}.json`, each `/`-separated segment of the id percent-quoted."""
        segments = model_id.split("/")
        if any(segment in ("", ".", "..") for segment in segments):
            raise ParameterError(f"model id {model_id!r} has an empty, '.' or '..' segment")
        return f"{self.base_url}/models/{'/'.join(quote(segment, safe='') for segment in segments)}.json"

    def headers_for(self, url: str) -> dict[str, str]:
        """The Authorization header for URLs on the registry's own origin; nothing for anyone else."""
        if self._token and _origin(url) == _origin(self.base_url):
            return {"Authorization": f"Bearer {self._token}"}
        return {}

    async def get_model(self, model_id: str) -> ModelDocument | None:
        """The registry's document for the id (file URLs made absolute), or None if it has none."""
        url = self.document_url(model_id)
        async with aiohttp.ClientSession(timeout=TIMEOUT) as client:
            body = await retrying(
                lambda: self._get_document(client, url, model_id),
                what=f"model {model_id!r} from {redact_url(url)}",
                retries=self.retries,
                backoff_s=self.backoff_s,
            )
        if body is None:
            return None
        return only_remote_files(with_absolute_urls(decode_document(body, model_id), url), url)

    async def _get_document(self, client: aiohttp.ClientSession, url: str, model_id: str) -> bytes | None:
        async with client.get(yarl.URL(url, encoded=True), headers=self.headers_for(url)) as response:
            if response.status == 200:
                return await response.read()
            if response.status == 404:
                return None
            raise self._failure(response.status, url, model_id)

    def _failure(self, status: int, url: str, model_id: str) -> Exception:
        where = f"model {model_id!r}: the registry at {redact_url(url)} answered HTTP {status}"
        if status in (401, 403) and self._token:
            return AccessError(f"{where}; it refused the token: check {TOKEN_VARIABLE}")
        if status in (401, 403):
            return AccessError(f"{where}; it wants a token: set {TOKEN_VARIABLE}")
        if status >= 500 or status in (408, 429):
            return TransientError(f"HTTP {status}")
        return DownloadError(where)


def decode_document(body: bytes, model_id: str) -> ModelDocument:
    """The document, or PackageError naming the model and the path of the bad value (`$.packages[0]...`)."""
    try:
        return msgspec.json.decode(body, type=ModelDocument)
    except msgspec.DecodeError as exc:
        raise PackageError(f"model {model_id!r}: the registry's document is not valid: {exc}") from exc


def with_absolute_urls(document: ModelDocument, document_url: str) -> ModelDocument:
    """The document with every relative file URL resolved against the URL it was fetched from."""
    packages = [_package_with_absolute_urls(package, document_url) for package in document.packages]
    return msgspec.structs.replace(document, packages=packages)


def _package_with_absolute_urls(package: ModelPackage, document_url: str) -> ModelPackage:
    files = [_file_with_absolute_url(spec, document_url) for spec in package.files]
    return msgspec.structs.replace(package, files=files)


def _file_with_absolute_url(spec: FileSpec, document_url: str) -> FileSpec:
    if spec.url is None:
        return spec
    return msgspec.structs.replace(spec, url=urljoin(document_url, spec.url))


def only_remote_files(document: ModelDocument, document_url: str) -> ModelDocument:
    """The document, or UnsafePathError if a file URL is not http(s): a registry must not name local files."""
    for package in document.packages:
        for spec in package.files:
            if urlsplit(spec.url or "").scheme.lower() not in ("http", "https"):
                raise UnsafePathError(
                    f"model {document.model_id!r} from {redact_url(document_url)}: package {package.package_id!r} "
                    f"names file {spec.name!r} at {redact_url(spec.url or '(no URL)')}; a registry may name only http(s) URLs"
                )
    return document


def _origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) with the scheme's default port filled in; empty for a relative or odd URL."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or {"http": 80, "https": 443}.get(scheme)
    except ValueError:
        return ("", "", None)
    return (scheme, (parts.hostname or "").lower(), port)
