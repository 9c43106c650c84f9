"""Make examples/media/astronaut.mp4: a slow pan and zoom over scikit-image's astronaut photo.

The photo is Eileen Collins, NASA, public domain. Run from the project root:
    python examples/make_quickstart_clip.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import av
import numpy as np

WIDTH, HEIGHT, FPS, SECONDS = 1280, 720, 25, 4
FACE_CENTRE = np.array([226.0, 122.0])  # x, y in the 512 x 512 photo


def crop_windows(count: int) -> list[tuple[int, int, int, int]]:
    """16:9 windows that start on the whole width and close in on the face."""
    windows = []
    for t in np.linspace(0.0, 1.0, count):
        width = 512 - 224 * t
        height = width * HEIGHT / WIDTH
        centre = np.array([256.0, 150.0]) * (1 - t) + FACE_CENTRE * t
        left = int(np.clip(centre[0] - width / 2, 0, 512 - width))
        top = int(np.clip(centre[1] - height / 2, 0, 512 - height))
        windows.append((left, top, int(width), int(height)))
    return windows


def main(path: str = "examples/media/astronaut.mp4") -> None:
    from skimage import data

    photo = data.astronaut()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with av.open(path, "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"crf": "26", "preset": "slow"}
        for left, top, width, height in crop_windows(FPS * SECONDS):
            crop = np.ascontiguousarray(photo[top : top + height, left : left + width])
            frame = av.VideoFrame.from_ndarray(crop, format="rgb24").reformat(WIDTH, HEIGHT, interpolation="BICUBIC")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


if __name__ == "__main__":
    main(*sys.argv[1:])
