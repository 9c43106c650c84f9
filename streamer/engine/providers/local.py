"""Models kept in a folder, for sites without network: `<root>/<model_id>/model.json`.

Each package's files lie in `<root>/<model_id>/<package_id>/<file name>` unless the manifest gives
them an `http(s)` URL, or a `file://` URL inside `<root>/<model_id>`; any other URL is refused. The
manifest is the same JSON document a registry serves.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

import msgspec

from ...errors import PackageError, UnsafePathError
from ..cache import safe_file_path
from ..entities import ModelDocument

MANIFEST = "model.json"


class LocalDirectoryProvider:
    name = "local"

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root or os.environ.get("STREAMER_MODELS_DIR", "models"))

    async def get_model(self, model_id: str) -> ModelDocument | None:
        folder = self.root / model_id
        return read_model_folder(folder) if (folder / MANIFEST).is_file() else None


def read_model_folder(folder: Path) -> ModelDocument:
    """The folder's manifest, its local files given `file://` URLs inside the folder."""
    folder = folder.resolve()  # the default root, "models", is relative; file URLs must not be
    manifest = folder / MANIFEST
    try:
        document = msgspec.json.decode(manifest.read_bytes(), type=ModelDocument)
    except msgspec.ValidationError as exc:
        raise PackageError(f"{manifest}: not a valid model manifest: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise PackageError(f"{manifest}: not JSON: {exc}") from exc
    for package in document.packages:
        for spec in package.files:
            if spec.url is None:
                spec.url = safe_file_path(folder / package.package_id, spec.name).as_uri()
            else:
                _check_url_stays_inside(spec.url, folder, f"{manifest}: package {package.package_id!r} file {spec.name!r}")
    return document


def _check_url_stays_inside(url: str, folder: Path, where: str) -> None:
    """UnsafePathError unless the URL is http(s) or a `file://` URL of a file inside the folder."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        return
    inside = scheme == "file" and parts.netloc in ("", "localhost")
    if inside:
        inside = Path(url2pathname(parts.path)).resolve().is_relative_to(folder.resolve())
    if not inside:
        raise UnsafePathError(f"{where}: URL {url!r} is refused: a model folder may name only http(s) URLs and files inside {folder}")
