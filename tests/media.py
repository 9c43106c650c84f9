"""Tiny media made with PyAV for the tests (milliseconds each, nothing committed)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def pattern(index: int, width: int, height: int) -> np.ndarray:
    """A moving gradient with a frame-numbered square, RGB uint8."""
    ys, xs = np.mgrid[0:height, 0:width]
    image = np.stack([(xs + 4 * index) % 256, (ys + 2 * index) % 256, np.full_like(xs, 80)], axis=-1)
    image = image.astype(np.uint8)
    side = max(4, min(width, height) // 4)
    left = (index * 7) % max(1, width - side)
    image[: side, left : left + side] = 255
    return image


def write_clip(
    path: Path,
    frames: int = 30,
    width: int = 160,
    height: int = 96,
    fps: int = 30,
    codec: str = "libx264",
    gop: int | None = None,
    faststart: bool = False,
) -> Path:
    """An H.264 MP4 with `frames` frames at `fps` (PTS i / fps), a keyframe every `gop` frames if given;
    with `faststart`, the index (moov) comes before the frames, as for streaming."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", options={"movflags": "faststart"} if faststart else {}) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if codec == "libx264":
            stream.options = {"preset": "ultrafast"}
        if gop is not None:
            stream.codec_context.gop_size = gop
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(pattern(index, width, height), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def write_ts_clip(path: Path, frames: int = 30, fps: int = 30, first_pts: int = 0) -> Path:
    """An H.264 MPEG-TS without B-frames whose PTS (90 kHz) start at `first_pts` and grow one frame
    step at a time, written as 33 bits: a `first_pts` near 2**33 makes them wrap."""
    step, time_base = 90_000 // fps, Fraction(1, 90_000)
    with av.open(str(path), "w", format="mpegts") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 160, 96, "yuv420p"
        stream.options = {"preset": "ultrafast", "bf": "0"}
        pictures = [av.VideoFrame.from_ndarray(pattern(index, 160, 96), format="rgb24") for index in range(frames)]
        packets = [packet for picture in [*pictures, None] for packet in stream.encode(picture)]
        for number, packet in enumerate(packets):
            packet.time_base = time_base
            packet.pts = packet.dts = first_pts + number * step
            container.mux(packet)
    return path


def concatenate(path: Path, *parts: Path) -> Path:
    """The files' bytes back to back, as `cat a.ts b.ts > path` (the second's PTS start over)."""
    path.write_bytes(b"".join(part.read_bytes() for part in parts))
    return path


def cut(path: Path, share: float = 0.5) -> Path:
    """Keep only the first `share` of the file's bytes (a download or a recording that stopped)."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * share)])
    return path


def write_image_clip(path: Path, image: np.ndarray, frames: int = 4, fps: int = 25) -> Path:
    """A clip that shows one still image (even-sized) for `frames` frames."""
    height, width = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
    still = np.ascontiguousarray(image[:height, :width])
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "18"}
        for _ in range(frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(still, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


# The moving-face clip: the astronaut's face (this crop of scikit-image's photo) pasted on grey,
# its left edge moving from FACE_START_X by FACE_STEP_X pixels per frame at height FACE_TOP.
FACE_CROP = (160, 40, 290, 200)  # x1, y1, x2, y2 in the photo
FACE_START_X, FACE_STEP_X, FACE_TOP = 30, 8, 110
MOVING_SIZE = (640, 360)


def face_box(index: int) -> tuple[int, int, int, int]:
    """Where the pasted crop is in frame `index` (x1, y1, x2, y2)."""
    x1, y1, x2, y2 = FACE_CROP
    left = FACE_START_X + FACE_STEP_X * index
    return left, FACE_TOP, left + (x2 - x1), FACE_TOP + (y2 - y1)


def moving_face_frame(photo: np.ndarray, index: int) -> np.ndarray:
    width, height = MOVING_SIZE
    image = np.full((height, width, 3), 128, np.uint8)
    x1, y1, x2, y2 = FACE_CROP
    left, top, right, bottom = face_box(index)
    image[top:bottom, left:right] = photo[y1:y2, x1:x2]
    return image


def write_moving_face_clip(path: Path, photo: np.ndarray, frames: int = 60, fps: int = 15) -> Path:
    """A face moving left to right along a known path (see `face_box`), H.264 at high quality."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = MOVING_SIZE
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "12"}
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(moving_face_frame(photo, index), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path
