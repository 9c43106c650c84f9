"""Video sources: each decodes in its own thread into its own bounded queue."""

from ..config.schema import FileSourceConfig, HlsSourceConfig, LavfiSourceConfig, LiveSourceConfigBase, RtspSourceConfig, SourceConfig, WebcamSourceConfig
from .av_source import AvSource
from .base import Source
from .queue import FrameQueue
from .state import Backoff, SourceEvent, SourceState, StateChange
from .stats import SourceStats

__all__ = [
    "AvSource",
    "Backoff",
    "FrameQueue",
    "Source",
    "SourceEvent",
    "SourceState",
    "SourceStats",
    "StateChange",
    "build_source",
    "default_policy",
    "default_queue_size",
    "tolerates_damage",
]


def build_source(config: SourceConfig, start_after: tuple[int, float | None] | None = None) -> Source:
    """The Source object a config table describes; a file source may resume after (index, pts)."""
    assert config.id is not None, "load_config gives every source an id"
    common = {"max_frames": config.max_frames, "max_fps": config.max_fps, "hwaccel": config.hwaccel}
    if isinstance(config, FileSourceConfig):
        return AvSource(config.id, config.path, realtime=config.realtime, loop=config.loop, start_after=start_after, **common)
    if start_after is not None:
        raise TypeError(f"only file sources resume from a checkpoint, not {type(config).__name__}")
    if isinstance(config, LavfiSourceConfig):
        return AvSource(config.id, config.graph, kind="lavfi graph", format="lavfi", live=True,
                        realtime=config.realtime, **common)
    if isinstance(config, LiveSourceConfigBase):
        return _live_source(config, common)
    raise TypeError(f"unknown source config {type(config).__name__}")


def _live_source(config: LiveSourceConfigBase, common: dict) -> Source:
    url, kind, format, options = _stream_address(config)
    # An HLS read blocks for up to a segment while the playlist grows: it gets the whole read timeout.
    read_wait_s = config.read_timeout_s if isinstance(config, HlsSourceConfig) else None
    return AvSource(
        config.id,  # type: ignore[arg-type]
        url,
        kind=kind,
        format=format,
        live=True,
        options={**options, **config.options},
        open_timeout_s=config.open_timeout_s,
        read_timeout_s=config.read_timeout_s,
        read_wait_s=read_wait_s,
        backoff=Backoff(config.backoff_initial_s, config.backoff_max_s, config.max_attempts),
        **common,
    )


# The only protocols FFmpeg may open for a network source, so that a playlist, an SDP or a redirect
# can never make it read a local file (`file:`, `pipe:`, `fd:`) or chain another protocol.
# RTSP: the session over tcp (tls for rtsps), RTP over udp (or interleaved in tcp), SRTP.
RTSP_PROTOCOLS = "tcp,tls,udp,rtp,srtp"
# HLS and other HTTP streams: playlists and segments over http(s) (httpproxy: https through a proxy),
# AES-128 segments through crypto.
HTTP_PROTOCOLS = "http,https,tcp,tls,httpproxy,crypto"


def _stream_address(config: LiveSourceConfigBase) -> tuple[str, str, str | None, dict[str, str]]:
    """(url, kind, FFmpeg format, FFmpeg options) for each live source type; a config's own
    `options` come on top (the trusted config file may widen the protocol whitelist, the API may not)."""
    if isinstance(config, RtspSourceConfig):
        # FFmpeg probes a stream for 5 s by default; half a second finds an H.264 camera's size.
        options = {"rtsp_transport": config.transport, "analyzeduration": "500000", "protocol_whitelist": RTSP_PROTOCOLS}
        return config.url, "rtsp", None, options
    if isinstance(config, HlsSourceConfig):
        return config.url, "stream", None, {"protocol_whitelist": HTTP_PROTOCOLS}
    assert isinstance(config, WebcamSourceConfig)
    options = {key: value for key, value in (
        ("video_size", config.video_size), ("framerate", config.framerate), ("input_format", config.input_format)
    ) if value}
    return config.device, "webcam", "v4l2", options


def default_queue_size(config: SourceConfig) -> int:
    """Files queue a few frames to keep the model busy; live sources keep two, to stay fresh."""
    if config.queue_size is not None:
        return config.queue_size
    return 8 if isinstance(config, FileSourceConfig) else 2


def default_policy(config: SourceConfig) -> str:
    """`block` for files (lose nothing), `latest` for live sources (never fall behind)."""
    if config.policy is not None:
        return config.policy
    return "block" if isinstance(config, FileSourceConfig) else "latest"


def tolerates_damage(config: SourceConfig) -> bool:
    """Whether a damaged file (decode errors, frames missing) still counts as a success: never for
    a file unless its config says so; live sources are never checked for it."""
    return isinstance(config, FileSourceConfig) and config.tolerate_damage
