"""What FFmpeg is asked to open for each source table: its URL, input format and options."""

from __future__ import annotations

from typing import NamedTuple

from ..config.schema import (
    FileSourceConfig, HlsSourceConfig, LavfiSourceConfig, LiveSourceConfigBase, RtspSourceConfig, SourceConfig,
    WebcamSourceConfig,
)  # fmt: skip

# The only protocols FFmpeg may open for a network source, so that a playlist, an SDP or a redirect
# can never make it read a local file (`file:`, `pipe:`, `fd:`) or chain another protocol.
# RTSP: the session over tcp (tls for rtsps), RTP over udp (or interleaved in tcp), SRTP.
RTSP_PROTOCOLS = "tcp,tls,udp,rtp,srtp"
# HLS and other HTTP streams: playlists and segments over http(s) (httpproxy: https through a proxy),
# AES-128 segments through crypto.
HTTP_PROTOCOLS = "http,https,tcp,tls,httpproxy,crypto"


class Address(NamedTuple):
    url: str
    kind: str  # what a log line calls it: file, lavfi graph, rtsp, stream, webcam
    format: str | None  # FFmpeg's input format, None to let it probe
    options: dict[str, str]


def address(config: SourceConfig) -> Address:
    """The address of each source type; a live config's own `options` come on top (the trusted
    config file may widen the protocol whitelist, the API may not: see service/source_policy.py)."""
    if isinstance(config, FileSourceConfig):
        return Address(config.path, "file", None, {})
    if isinstance(config, LavfiSourceConfig):
        return Address(config.graph, "lavfi graph", "lavfi", {})
    assert isinstance(config, LiveSourceConfigBase), f"unknown source config {type(config).__name__}"
    url, kind, format, options = _stream_address(config)
    return Address(url, kind, format, {**options, **config.options})


def _stream_address(config: LiveSourceConfigBase) -> Address:
    if isinstance(config, RtspSourceConfig):
        # FFmpeg probes a stream for 5 s by default; half a second finds an H.264 camera's size.
        options = {
            "rtsp_transport": config.transport, "analyzeduration": "500000", "protocol_whitelist": RTSP_PROTOCOLS,
        }
        return Address(config.url, "rtsp", None, options)
    if isinstance(config, HlsSourceConfig):
        return Address(config.url, "stream", None, {"protocol_whitelist": HTTP_PROTOCOLS})
    assert isinstance(config, WebcamSourceConfig), f"unknown source config {type(config).__name__}"
    options = {key: value for key, value in (
        ("video_size", config.video_size), ("framerate", config.framerate), ("input_format", config.input_format)
    ) if value}
    return Address(config.device, "webcam", "v4l2", options)
