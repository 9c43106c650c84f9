"""Chroma siting: measured as FFmpeg's scaler takes it, so the device letterbox matches the CPU path
on frames as decoders tag them (H.264: left, HEVC may say top-left), not only on frames made in memory."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from streamer.device import DeviceInputBuffers, array_device, to_host
from streamer.device.siting import chroma_shift
from streamer.engine.preprocess import InputBuffers, InputSpec
from streamer.frames import Frame
from tests.engine.gpu import requires_gpu
from tests.media import write_image_clip

from .helpers import decoded_frame, textured

ONE_LEVEL = 1 / 255 + 1e-5
LEFT, TOP_LEFT, CENTRE = (0.25, 0.0), (0.25, 0.25), (0.0, 0.0)


def decoded_clip_frame(path: Path, codec: str = "libx264", options: dict[str, str] | None = None) -> av.VideoFrame:
    """The first frame of a clip of the textured still, encoded with `codec`, as FFmpeg decodes it."""
    if codec == "libx264":
        write_image_clip(path, textured(640, 360), frames=2)
    else:
        # A raw Annex B stream: its parameter sets travel in the packets, with no MP4 box to write
        # (on a CI machine the MP4 muxer answered "not yet implemented" to x265's headers).
        with av.open(str(path), "w", format="hevc") as container:
            stream = container.add_stream(codec, rate=25)
            stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
            stream.options = options or {}
            for packet in stream.encode(av.VideoFrame.from_ndarray(textured(640, 360), format="rgb24")):
                container.mux(packet)
            for packet in stream.encode(None):
                container.mux(packet)
    with av.open(str(path)) as container:
        return next(container.decode(video=0))


def test_chroma_shift_when_h264_decodes_a_frame_is_left_sited_planar_or_nv12(tmp_path):
    decoded = decoded_clip_frame(tmp_path / "h264.mp4")

    assert chroma_shift(decoded) == LEFT
    assert chroma_shift(decoded.reformat(format="nv12")) == LEFT  # as NVDEC frames come, tag kept


def test_chroma_shift_when_hevc_says_top_left_is_top_left(tmp_path):
    decoded = decoded_clip_frame(tmp_path / "clip.hevc", "libx265", {"x265-params": "chromaloc=2:log-level=error"})

    assert chroma_shift(decoded) == TOP_LEFT


@pytest.mark.parametrize("pix_fmt", ["yuv420p", "yuvj420p", "nv12"])
def test_chroma_shift_when_a_frame_is_made_in_memory_is_centre_sited(pix_fmt):
    assert chroma_shift(decoded_frame(640, 360, 0, pix_fmt=pix_fmt).decoded) == CENTRE


@pytest.mark.parametrize("pix_fmt", [None, "nv12"])
def test_device_letterbox_when_frames_are_decoded_h264_matches_ffmpeg_within_one_level(tmp_path, pix_fmt):
    decoded = decoded_clip_frame(tmp_path / "h264.mp4")
    decoded = decoded if pix_fmt is None else decoded.reformat(format=pix_fmt)
    frames = [Frame("cam", 0, None, 0.0, decoded=decoded), Frame("other", 0, None, 0.0, decoded=decoded_frame(640, 360).decoded)]
    spec = InputSpec(320, 320, np.dtype(np.float32))

    expected, _ = InputBuffers(spec, 2).acquire().fill(frames)
    got, _ = DeviceInputBuffers(spec, 2, array_device("cpu")).acquire().fill(frames)

    assert np.abs(np.asarray(got) - np.asarray(expected)).max() <= ONE_LEVEL  # was 45 levels, centre-sited


@requires_gpu()
def test_gpu_letterbox_when_frames_are_decoded_h264_matches_ffmpeg_within_one_level(tmp_path):
    decoded = decoded_clip_frame(tmp_path / "h264.mp4")
    frames = [Frame("cam", 0, None, 0.0, decoded=decoded), Frame("nv12", 0, None, 0.0, decoded=decoded.reformat(format="nv12"))]
    spec = InputSpec(320, 320, np.dtype(np.float32))

    expected, _ = InputBuffers(spec, 2).acquire().fill(frames)
    got, _ = DeviceInputBuffers(spec, 2, array_device("cuda")).acquire().fill(frames)

    assert np.abs(to_host(got) - expected).max() <= ONE_LEVEL
