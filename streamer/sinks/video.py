"""Video sink: draw boxes and labels with supervision's annotators, encode with PyAV.

Drawing and encoding run in a worker thread. The frame rate is taken from the first two frames'
timestamps unless configured.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import anyio
import numpy as np

from ..errors import SinkError
from ..frames import Result
from ..interop import import_supervision, to_supervision
from .base import SinkBase
from .files import prepare_output

DEFAULT_FPS = 30.0


class VideoSink(SinkBase):
    def __init__(
        self,
        path: str,
        *,
        sources: list[str] | None = None,
        queue_size: int = 64,
        codec: str = "libx264",
        crf: int = 23,
        fps: float | None = None,
    ) -> None:
        super().__init__(sources, queue_size)
        self.path = path
        self.codec = codec
        self.crf = crf
        self.fps = fps
        self.written = 0
        self._pending: Result | None = None
        self._encoder: _Encoder | None = None
        self._annotate: _Annotator | None = None

    def describe(self) -> str:
        return f"video {self.path}"

    async def __aenter__(self) -> VideoSink:
        prepare_output(self.path, "video sink")
        self._annotate = _Annotator()
        return self

    async def write(self, result: Result) -> None:
        if self._encoder is None and self.fps is None and self._pending is None:
            self._pending = result  # wait for a second timestamp to learn the frame rate
            return
        if self._encoder is None:
            first = self._pending or result
            self._encoder = await anyio.to_thread.run_sync(self._open, first, _rate(self.fps, self._pending, result))
        if self._pending is not None:
            pending, self._pending = self._pending, None
            await anyio.to_thread.run_sync(self._encode, pending)
        await anyio.to_thread.run_sync(self._encode, result)

    async def __aexit__(self, *exc_info: object) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self._encoder = await anyio.to_thread.run_sync(self._open, pending, self.fps or DEFAULT_FPS)
            await anyio.to_thread.run_sync(self._encode, pending)
        if self._encoder is not None:
            await anyio.to_thread.run_sync(self._encoder.close)
            self._encoder = None

    def _open(self, first: Result, fps: float) -> _Encoder:
        try:
            return _Encoder(self.path, self.codec, self.crf, fps, first.frame.width, first.frame.height)
        except Exception as exc:  # PyAV raises several error types for unknown codecs and bad options
            raise SinkError(f"video sink: cannot encode {self.path!r} with {self.codec!r}: {exc}") from exc

    def _encode(self, result: Result) -> None:
        assert self._encoder is not None and self._annotate is not None
        self._encoder.write(self._annotate(result))
        self.written += 1


def _rate(configured: float | None, first: Result | None, second: Result) -> float:
    if configured is not None:
        return configured
    if first is not None and first.frame.pts is not None and second.frame.pts is not None:
        step = second.frame.pts - first.frame.pts
        if step > 0:
            return 1 / step
    return DEFAULT_FPS


class _Annotator:
    def __init__(self) -> None:
        sv = import_supervision()
        self._boxes = sv.BoxAnnotator()
        self._labels = sv.LabelAnnotator()

    def __call__(self, result: Result) -> np.ndarray:
        image = result.frame.image.copy()
        if not len(result.detections):
            return image
        detections = to_supervision(result)
        labels = [f"{name} {conf:.2f}" for name, conf in zip(result.class_names(), result.detections.confidence)]
        image = self._boxes.annotate(image, detections)
        return self._labels.annotate(image, detections, labels=labels)


class _Encoder:
    """H.264 (or another codec) in an MP4, sized to even dimensions as yuv420p requires."""

    def __init__(self, path: str, codec: str, crf: int, fps: float, width: int, height: int) -> None:
        import av

        self._av = av
        self._container = av.open(path, "w")
        rate = Fraction(fps).limit_denominator(1001)
        self._stream = self._container.add_stream(codec, rate=rate)
        self._stream.width, self._stream.height = width - width % 2, height - height % 2
        self._stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            self._stream.options = {"crf": str(crf), "preset": "veryfast"}

    def write(self, image: np.ndarray) -> None:
        image = image[: self._stream.height, : self._stream.width]
        frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        self._mux(self._stream.encode(frame))

    def close(self) -> None:
        self._mux(self._stream.encode(None))
        self._container.close()

    def _mux(self, packets: Any) -> None:
        for packet in packets:
            self._container.mux(packet)
