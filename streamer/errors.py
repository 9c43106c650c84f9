"""Every error streamer raises, as one tree.

    StreamerError
    ├── ConfigError                 the TOML file or config object is invalid (names the key path)
    │   └── SourcePolicyError       a source the admin API may not add under [server.api_sources]
    ├── SourceError                 one video source failed; the others keep running
    │   ├── SourceOpenError         could not open the file, device or stream (live ones retry)
    │   │   └── SourceRefusedError  wrong credentials, no such stream or file, empty file: no retry helps
    │   ├── SourceDecodeError       opened, but the data could not be decoded (or the link dropped)
    │   └── SourceStalledError      connected, but no frame within the read timeout
    ├── ModelError
    │   ├── ModelNotFoundError      no model with that id or path
    │   ├── ModelFormatError        the file is not a model we can read
    │   ├── UnknownArchitectureError   readable, but no model family handles it
    │   ├── MissingDependencyError  an optional library is not installed (names the extra)
    │   ├── ParameterError          load options that contradict each other or the model
    │   ├── NoCompatiblePackageError   no package fits this machine and request (lists each reason)
    │   ├── DependencyModelError    a model this model depends on could not be loaded
    │   ├── AccessError             the registry refused the credentials (token never shown)
    │   ├── DownloadError           a file could not be fetched, even after retries
    │   ├── OfflineError            offline mode, and the package is not in the cache
    │   └── PackageError            a package's manifest or files are not acceptable
    │       ├── ChecksumMismatchError   a file's sha256 differs from the one declared or pinned
    │       ├── UntrustedPackageError   a file without a checksum, or an untrusted format
    │       └── UnsafePathError     a file name that would escape its package folder
    ├── StageError                  a pipeline stage could not be loaded or failed
    ├── SinkError                   a sink could not be opened or written
    │   └── SinkWriteError          one item was not written; the sink goes on with the next
    ├── ServerError                 the metrics and admin server (or `models serve`) could not start (port, token)
    ├── ClusterError                `streamer cluster run`: Ray could not start or be reached, or a worker failed to start
    └── StatusError                 `streamer status` could not read a daemon's /status (nothing answers, token refused)

Each class carries `help_url`, an anchor in docs/errors.md that explains the cause and the fix.
Errors from the libraries below (PyAV, ONNX Runtime, msgspec) are translated at the boundary
where they occur and chained with `raise ... from exc`.
"""

from __future__ import annotations

DOCS_URL = "https://github.com/streamer-vision/streamer/blob/main/docs/errors.md"


class StreamerError(Exception):
    """Root of every error streamer raises on purpose."""

    anchor = "streamererror"

    @classmethod
    def help_url(cls) -> str:
        return f"{DOCS_URL}#{cls.anchor}"

    @property
    def message(self) -> str:
        """The text without the help link, for embedding in another message."""
        return super().__str__()

    def __str__(self) -> str:
        return f"{self.message} (see {self.help_url()})"


class ConfigError(StreamerError, ValueError):
    """The configuration is invalid; the message starts with the key path."""

    anchor = "configerror"

    def __init__(self, message: str, path: str = "$", file: str | None = None) -> None:
        self.path = path
        self.file = file
        where = f"{file}: " if file else ""
        super().__init__(f"{where}{path}: {message}")


class SourcePolicyError(ConfigError):
    """A valid source table the admin API refuses under `[server.api_sources]` (names the key path)."""

    anchor = "sourcepolicyerror"


class SourceError(StreamerError):
    """A video source failed; only that source stops."""

    anchor = "sourceerror"


class SourceOpenError(SourceError, OSError):
    """The source's file, device or stream could not be opened."""

    anchor = "sourceopenerror"


class SourceDecodeError(SourceError):
    """The source opened but its data could not be decoded, or the connection broke mid-stream."""

    anchor = "sourcedecodeerror"


class SourceRefusedError(SourceOpenError):
    """The source said no: wrong credentials, no such stream, no such file. Retrying will not help."""

    anchor = "sourcerefusederror"


class SourceStalledError(SourceError):
    """Connected, but no frame came for longer than the read timeout (the watchdog fired)."""

    anchor = "sourcestallederror"


class ModelError(StreamerError):
    """A model could not be found, read or run."""

    anchor = "modelerror"


class ModelNotFoundError(ModelError, FileNotFoundError):
    """No model with that id, and no file at that path."""

    anchor = "modelnotfounderror"


class ModelFormatError(ModelError):
    """The file exists but is not a model streamer can read."""

    anchor = "modelformaterror"


class UnknownArchitectureError(ModelError):
    """The model is readable but no model family claims it."""

    anchor = "unknownarchitectureerror"


class MissingDependencyError(ModelError, ImportError):
    """An optional library is missing; the message names what to install."""

    anchor = "missingdependencyerror"


class ParameterError(ModelError, ValueError):
    """Load options that contradict each other or what the model allows."""

    anchor = "parametererror"


class NoCompatiblePackageError(ModelError):
    """Negotiation rejected every package; the message gives each one's reason."""

    anchor = "nocompatiblepackageerror"


class DependencyModelError(ModelError):
    """A model this model depends on could not be loaded."""

    anchor = "dependencymodelerror"


class AccessError(ModelError, PermissionError):
    """The registry refused our credentials (401/403); the token itself is never shown."""

    anchor = "accesserror"


class DownloadError(ModelError, ConnectionError):
    """A file could not be downloaded, even after the retries."""

    anchor = "downloaderror"


class OfflineError(ModelError):
    """Offline mode is on and the package is not (completely) in the cache."""

    anchor = "offlineerror"


class PackageError(ModelError):
    """A package's manifest or files are not acceptable."""

    anchor = "packageerror"


class ChecksumMismatchError(PackageError):
    """A file's sha256 differs from the one its manifest declares (or we pinned)."""

    anchor = "checksummismatcherror"


class UntrustedPackageError(PackageError):
    """A file without a checksum, or a package not marked trusted, without allow_untrusted_packages."""

    anchor = "untrustedpackageerror"


class UnsafePathError(PackageError):
    """A file name in a manifest that would land outside its package folder."""

    anchor = "unsafepatherror"


class StageError(StreamerError):
    """A pipeline stage could not be loaded, or raised while running."""

    anchor = "stageerror"


class SinkError(StreamerError):
    """A sink could not be opened or written."""

    anchor = "sinkerror"


class SinkWriteError(SinkError):
    """One item could not be written; the sink itself is fine and takes the next one."""

    anchor = "sinkwriteerror"


class ServerError(StreamerError):
    """The HTTP server for metrics, health and the admin API (or `models serve`) could not start."""

    anchor = "servererror"


class ClusterError(StreamerError):
    """The Ray cluster could not be started or reached, or a worker of the fleet could not start."""

    anchor = "clustererror"


class StatusError(StreamerError):
    """`streamer status` could not read a running daemon's /status."""

    anchor = "statuserror"


def all_error_classes() -> list[type[StreamerError]]:
    """Every class in the tree, root first (used by the docs test)."""
    found: list[type[StreamerError]] = []
    pending: list[type[StreamerError]] = [StreamerError]
    while pending:
        cls = pending.pop(0)
        if cls not in found:
            found.append(cls)
            pending.extend(cls.__subclasses__())
    return found
