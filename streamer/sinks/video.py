"""Video sink: draw boxes, labels, masks and skeletons with supervision's annotators, encode with PyAV.

Drawing and encoding run in a worker thread. The frame rate is taken from the first two frames'
timestamps unless configured.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any, Callable

import anyio
import numpy as np

from ..config import configured
from ..config.schema import VideoSinkConfig
from ..errors import SinkError
from ..frames import Result, Shape
from ..interop import import_supervision, to_supervision, to_supervision_keypoints
from .base import Sink
from .files import prepare_output

DEFAULT_FPS = 30.0
MASK_OPACITY = 0.5
KEYPOINT_SHOWN = 0.5  # keypoints scored below this are not drawn (nor the skeleton's edges to them)


class VideoSink(Sink):
    """An MP4 of the frames, with boxes, labels, track ids, masks, keypoints and skeletons, zones and
    lines drawn unless `annotate=False`
    (a privacy-safe recording after an `anonymize` stage wants the plain, anonymised picture).

    An MP4 cannot be appended to: with `resume` (a run restarted from a checkpoint) the rest of the
    video goes to `<name>.resumed-<n>.mp4` beside the first part, which is kept."""

    config: VideoSinkConfig

    def __init__(self, config: VideoSinkConfig | None = None, /, *, resume: bool = False, **options: Any) -> None:
        config = configured(VideoSinkConfig, config, options)
        super().__init__(config, resume=resume)
        self.output = config.path  # where frames go: `path`, or a numbered part after a resume
        self.written = 0
        self._pending: Result | None = None
        self._encoder: _Encoder | None = None
        self._annotate: Callable[[Result], np.ndarray] | None = None

    @property
    def path(self) -> str:
        return self.config.path

    def describe(self) -> str:
        return f"video {self.path}"

    async def __aenter__(self) -> VideoSink:
        await anyio.to_thread.run_sync(self._enter)
        return self

    def _enter(self) -> None:
        if self.resume:
            self.output = _free_part(Path(self.path))
        prepare_output(self.output, "video sink")
        self._annotate = Annotator() if self.config.annotate else _plain

    async def write(self, result: Result) -> None:
        if self._encoder is None and self.config.fps is None and self._pending is None:
            self._pending = result  # wait for a second timestamp to learn the frame rate
            return
        if self._encoder is None:
            first = self._pending or result
            fps = _rate(self.config.fps, self._pending, result)
            self._encoder = await anyio.to_thread.run_sync(self._open, first, fps)
        if self._pending is not None:
            pending, self._pending = self._pending, None
            await anyio.to_thread.run_sync(self._encode, pending)
        await anyio.to_thread.run_sync(self._encode, result)

    async def __aexit__(self, *exc_info: object) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self._encoder = await anyio.to_thread.run_sync(self._open, pending, self.config.fps or DEFAULT_FPS)
            await anyio.to_thread.run_sync(self._encode, pending)
        if self._encoder is not None:
            await anyio.to_thread.run_sync(self._encoder.close)
            self._encoder = None

    def _open(self, first: Result, fps: float) -> _Encoder:
        config = self.config
        try:
            return _Encoder(self.output, config.codec, config.crf, fps, first.frame.width, first.frame.height)
        except Exception as exc:  # PyAV raises several error types for unknown codecs and bad options
            raise SinkError(f"video sink: cannot encode {self.path!r} with {config.codec!r}: {exc}") from exc

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


class Annotator:
    """A result drawn on a copy of its frame: zones and lines, masks (blended over each box's crop,
    never as full-frame bitmaps), boxes, keypoints (those scored below KEYPOINT_SHOWN left out) joined
    by the model's skeleton, and labels with the track id when there is one. supervision's
    annotators draw all but the masks, in its default palette by class."""

    def __init__(self) -> None:
        self._sv = sv = import_supervision()
        self._boxes = sv.BoxAnnotator()
        self._labels = sv.LabelAnnotator()
        self._vertices = sv.VertexAnnotator(radius=3)
        self._edges: dict[tuple[tuple[int, int], ...], Any] = {}  # one EdgeAnnotator per skeleton
        self._palette = sv.ColorPalette.DEFAULT
        self._shape_color = sv.Color.from_hex("#00d4ff")  # drawn as BGR on our RGB frames: amber

    def __call__(self, result: Result) -> np.ndarray:
        image = result.frame.image.copy()
        for shape in result.shapes:
            self._draw_shape(image, shape)
        if not len(result.detections):
            return image
        if result.detections.mask is not None:
            self._blend_masks(image, result)
        detections = to_supervision(result, masks=False)
        image = self._boxes.annotate(image, detections)
        if result.detections.keypoints is not None:
            image = self._draw_keypoints(image, result)
        return self._labels.annotate(image, detections, labels=_labels(result))

    def _blend_masks(self, image: np.ndarray, result: Result) -> None:
        """Each mask's pixels blended half way to its class's colour, one box crop at a time."""
        masks = result.detections.mask
        assert masks is not None
        for (x0, y0, x1, y1), bitmap, class_id in zip(masks.boxes.tolist(), masks.bitmaps, result.detections.class_id):
            color = np.array(self._palette.by_idx(int(class_id)).as_bgr(), np.float32)  # BGR, as the boxes are
            crop = image[y0:y1, x0:x1]
            crop[bitmap] = (crop[bitmap] * (1 - MASK_OPACITY) + color * MASK_OPACITY).astype(np.uint8)

    def _draw_keypoints(self, image: np.ndarray, result: Result) -> np.ndarray:
        keypoints = to_supervision_keypoints(result)
        if result.detections.keypoint_confidence is not None:
            keypoints.visible = result.detections.keypoint_confidence >= KEYPOINT_SHOWN
        skeleton = result.model.skeleton
        if skeleton:
            if skeleton not in self._edges:  # supervision numbers keypoints from 1, ModelInfo from 0
                self._edges[skeleton] = self._sv.EdgeAnnotator(edges=[(a + 1, b + 1) for a, b in skeleton])
            image = self._edges[skeleton].annotate(image, keypoints)
        return self._vertices.annotate(image, keypoints)

    def _draw_shape(self, image: np.ndarray, shape: Shape) -> None:
        sv = self._sv
        if shape.closed:
            sv.draw_polygon(image, shape.points, color=self._shape_color, thickness=2)
        else:
            start, end = (sv.Point(int(x), int(y)) for x, y in shape.points[:2])
            sv.draw_line(image, start, end, color=self._shape_color, thickness=2)
        sv.draw_text(image, shape.name, _label_anchor(shape, image.shape), background_color=self._shape_color)


def _label_anchor(shape: Shape, size: tuple[int, ...]) -> Any:
    """Where a shape's name goes: just inside its first point, kept whole inside the frame
    (supervision centres the text on this point; about 10 px per character at its default scale)."""
    sv = import_supervision()
    height, width = size[:2]
    half_width, half_height = 5 * len(shape.name) + 10, 12
    x, y = (int(v) for v in shape.points[0])
    x = min(max(x + half_width, half_width), max(half_width, width - half_width))
    y = min(max(y + half_height, half_height), max(half_height, height - half_height))
    return sv.Point(x, y)


def _free_part(path: Path) -> str:
    """`path` if it is missing or empty, else the first `<stem>.resumed-<n><suffix>` not taken."""
    candidate, n = path, 0
    while candidate.exists() and candidate.stat().st_size > 0:
        n += 1
        candidate = path.with_name(f"{path.stem}.resumed-{n}{path.suffix}")
    return str(candidate)


def _plain(result: Result) -> np.ndarray:
    return result.frame.image


def _labels(result: Result) -> list[str]:
    detections = result.detections
    labels = [f"{name} {conf:.2f}" for name, conf in zip(result.class_names(), detections.confidence)]
    if detections.tracker_id is not None:
        labels = [f"#{tracker_id} {label}" for tracker_id, label in zip(detections.tracker_id, labels)]
    return labels


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
