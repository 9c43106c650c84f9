"""Letterbox a batch on a device: upload each frame's 8-bit planes once, do the rest there.

Per batch, frames of the same layout (YUV 4:2:0 from the decoder, planar or NV12 as hardware
decoders give it, with their chroma siting (siting.py), else RGB) and size are staged
side by side in one reusable host buffer (pinned on a GPU), uploaded in one copy, resampled with
FFmpeg's bilinear filter, converted to RGB with the frame's own matrix and range, rounded to 8 bits,
normalised and written into their slots of a reusable NCHW input on the device, all of it on the
buffer's own stream, inside the device's context. For YUV 4:2:0
(planar, full-range or NV12) frames and RGB images every pixel is within one level of what the CPU
path (`streamer.engine.preprocess.InputBuffers`) computes; frames in other pixel formats are converted to RGB
on the CPU first, at full size, so they come close but are not held to that.

Streams (the rule is streams.py's): `fill` records an event on the buffer's stream after its last
write and makes the caller's current stream wait for it, so a backend reading the batch on that
stream, or waiting for it, reads it whole; `release` takes a buffer back only once the caller's
current stream, where the backend handed its reads back, has passed an event. The filter taps every
buffer shares are uploaded once and waited for before any stream may read them.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from ..frames import Frame
from .arrays import ArrayDevice
from .streams import hand_off, host_wait, record
from .color import ColorMatrix
from .geometry import InputSpec, Placement, place
from .resample import DeviceTaps, resample_axis, triangle_taps
from .siting import chroma_shift

YUV420_FORMATS = ("yuv420p", "yuvj420p")
MAX_SITINGS = 4096  # connections whose chroma siting is remembered (then the memory starts over)
NV12 = "nv12"  # Y, then U and V interleaved: what NVDEC frames come down as


@dataclass(frozen=True)
class _Layout:
    """What frames must share to be staged and converted together."""

    kind: str  # "yuv420p", "nv12" or "rgb24"
    width: int
    height: int
    matrix: ColorMatrix | None
    chroma_shift: tuple[float, float] = (0.0, 0.0)  # where its chroma sits (siting.py)

    @classmethod
    def of(cls, frame: Frame, chroma_shift: Callable[[Frame], tuple[float, float]]) -> _Layout:
        decoded = frame.decoded
        name = decoded.format.name if decoded is not None else None
        if name in YUV420_FORMATS or name == NV12:
            kind = NV12 if name == NV12 else "yuv420p"
            return cls(kind, frame.width, frame.height, ColorMatrix.of_frame(decoded), chroma_shift(frame))
        return cls("rgb24", frame.width, frame.height, None)

    @property
    def chroma_size(self) -> tuple[int, int]:
        return (self.width + 1) // 2, (self.height + 1) // 2

    @property
    def staged_shape(self) -> tuple[int, ...]:
        if self.kind == "rgb24":
            return (self.height, self.width, 3)
        chroma_width, chroma_height = self.chroma_size
        return (self.width * self.height + 2 * chroma_width * chroma_height,)


class DeviceInputBuffers:
    """A thread-safe pool of NCHW inputs on `device`, reused batch after batch (as InputBuffers)."""

    def __init__(self, spec: InputSpec, capacity: int, device: ArrayDevice) -> None:
        self.spec = spec
        self.capacity = capacity
        self.device = device
        self._free: list[_DeviceBuffer] = []
        self._taps: dict[tuple[int, int, float], DeviceTaps] = {}
        self._sitings: dict[tuple[str, int, str, int, int], tuple[float, float]] = {}
        self._lock = threading.Lock()

    def acquire(self) -> _DeviceBuffer:
        with self._lock:
            if self._free:
                return self._free.pop()
        return _DeviceBuffer(self)

    def release(self, buffer: _DeviceBuffer) -> None:
        """Take `buffer` back, on the thread that ran its last reader, right after that reader.

        The reader handed its reads of the batch back to this thread's current stream (rule 3), so
        an event recorded there marks the last read; the buffer joins the free list once the GPU has
        passed it (rule 4), and whoever acquires it next may overwrite it on any stream.
        """
        host_wait(record(self.device.current_stream()))
        with self._lock:
            self._free.append(buffer)

    def taps(self, n_in: int, n_out: int, shift: float = 0.0) -> DeviceTaps:
        """The filter from `n_in` to `n_out` samples (centres moved by `shift`), on the device, made
        once per pool."""
        with self._lock:
            taps = self._taps.get((n_in, n_out, shift))
            if taps is None:
                # Shared by every buffer's stream: uploaded and waited for before it is cached.
                taps = DeviceTaps(triangle_taps(n_in, n_out, shift), self.device.shared_asarray)
                self._taps[(n_in, n_out, shift)] = taps
            return taps

    def chroma_shift(self, frame: Frame) -> tuple[float, float]:
        """Where a 4:2:0 frame's chroma sits (siting.py), measured on the first frame of each
        connection of each source and size, then taken as the connection's."""
        decoded = frame.decoded
        key = (frame.source_id, frame.session, decoded.format.name, frame.width, frame.height)  # type: ignore[union-attr]
        with self._lock:
            shift = self._sitings.get(key)
        if shift is None:
            shift = chroma_shift(decoded)
            with self._lock:
                if len(self._sitings) >= MAX_SITINGS:
                    self._sitings.clear()
                self._sitings[key] = shift
        return shift


class _DeviceBuffer:
    def __init__(self, pool: DeviceInputBuffers) -> None:
        self.pool = pool
        spec, device = pool.spec, pool.device
        self._stream = device.new_stream()  # first: the pad fill below runs on it, as every write does
        with device.activate(), self._stream:
            self.array = device.empty((pool.capacity, 3, spec.height, spec.width), spec.dtype)
            self.array[...] = spec.pad_value
        self._slot_geometry: list[tuple[int, int, int, int] | None] = [None] * pool.capacity
        self._staging: dict[_Layout, tuple[np.ndarray, Any]] = {}

    def fill(self, frames: Sequence[Frame], timings: dict[str, float] | None = None) -> tuple[Any, list[Placement]]:
        """Letterbox `frames` into the first slots; returns the batch (a device array) and placements.

        Given `timings`, adds the seconds spent staging on the host, uploading, and preprocessing on
        the device to its "stage", "upload" and "preprocess" entries (waiting for the device after
        each step, so only for measuring). The batch comes back ready on the caller's current
        stream (streams.py, rule 3): the host does not wait for it.
        """
        device = self.pool.device
        with device.activate():
            caller = device.current_stream()
            with self._stream:
                clock = _Clock(device, timings)
                placements: list[Placement] = []
                groups: dict[_Layout, list[int]] = defaultdict(list)
                for slot, frame in enumerate(frames):
                    placements.append(self._prepare_slot(slot, frame))
                    groups[_Layout.of(frame, self.pool.chroma_shift)].append(slot)
                for layout, slots in groups.items():
                    self._fill_group(layout, slots, [frames[slot] for slot in slots], placements[slots[0]], clock)
                clock.lap("preprocess")
            hand_off(self._stream, caller)  # rules 1 and 3: the backend reads it on (or after) `caller`
            return self.array[: len(frames)], placements

    def _prepare_slot(self, slot: int, frame: Frame) -> Placement:
        """The frame's placement; the slot is re-padded when its picture's geometry changed."""
        placement, new_width, new_height = place(frame.width, frame.height, self.pool.spec)
        geometry = (new_width, new_height, placement.left, placement.top)
        if self._slot_geometry[slot] != geometry:
            self.array[slot] = self.pool.spec.pad_value
            self._slot_geometry[slot] = geometry
        return placement

    def _fill_group(
        self, layout: _Layout, slots: list[int], frames: list[Frame], placement: Placement, clock: _Clock
    ) -> None:
        staged = self._upload(layout, frames, clock)
        new_width, new_height = self._slot_geometry[slots[0]][:2]  # type: ignore[index]
        if layout.kind == "rgb24":
            channels = self._resampled_rgb(staged, new_width, new_height)
        else:
            channels = self._resampled_yuv(layout, staged, new_width, new_height)
        self._write(slots, channels, placement, new_width, new_height)

    def _upload(self, layout: _Layout, frames: list[Frame], clock: _Clock) -> Any:
        """The frames' 8-bit pixels on the device, one row per frame, in one transfer."""
        staging = self._staging.get(layout)
        if staging is None:
            shape = (self.pool.capacity, *layout.staged_shape)
            staging = self._staging[layout] = (
                self.pool.device.empty_host(shape, np.uint8),
                self.pool.device.empty(shape, np.uint8),
            )
        host, device_array = staging
        clock.lap("preprocess")
        for row, frame in enumerate(frames):
            _stage(layout, frame, host[row])
        clock.lap("stage")
        count = len(frames)
        uploaded = self.pool.device.upload(host[:count], device_array[:count])
        clock.lap("upload")
        return uploaded

    def _resampled_rgb(self, staged: Any, width: int, height: int) -> list[Any]:
        rgb = self._resample(staged.astype(np.float32), height, width)
        return [rgb[..., channel] for channel in range(3)]

    def _resampled_yuv(self, layout: _Layout, staged: Any, width: int, height: int) -> list[Any]:
        count = staged.shape[0]
        luma_size = layout.width * layout.height
        chroma_width, chroma_height = layout.chroma_size
        chroma_size = chroma_width * chroma_height
        planes = staged.astype(np.float32)
        y = planes[:, :luma_size].reshape(count, layout.height, layout.width)
        if layout.kind == NV12:
            pairs = planes[:, luma_size:].reshape(count, chroma_height, chroma_width, 2)
            u, v = pairs[..., 0], pairs[..., 1]
        else:
            u = planes[:, luma_size : luma_size + chroma_size].reshape(count, chroma_height, chroma_width)
            v = planes[:, luma_size + chroma_size :].reshape(count, chroma_height, chroma_width)
        assert layout.matrix is not None
        shift = layout.chroma_shift
        return list(
            layout.matrix.to_rgb(
                self._resample(y, height, width),
                self._resample(u, height, width, shift),
                self._resample(v, height, width, shift),
            )
        )

    def _resample(self, planes: Any, height: int, width: int, shift: tuple[float, float] = (0.0, 0.0)) -> Any:
        """(batch, H, W[, C]) float32 to (batch, height, width[, C]), sampled `shift` (x, y) off centre."""
        rows = resample_axis(planes, self.pool.taps(planes.shape[1], height, shift[1]), axis=1)
        return resample_axis(rows, self.pool.taps(planes.shape[2], width, shift[0]), axis=2)

    def _write(self, slots: list[int], channels: list[Any], placement: Placement, width: int, height: int) -> None:
        """Round to 8 bits as the CPU path does, normalise, and place each channel in its slots."""
        spec, xp = self.pool.spec, self.pool.device.xp
        rows = slice(placement.top, placement.top + height)
        columns = slice(placement.left, placement.left + width)
        where = _slot_selector(slots, xp)
        for channel, values in enumerate(channels):
            values = xp.clip(xp.rint(values), 0.0, 255.0)
            values *= spec.scale
            if spec.offset:
                values += spec.offset
            self.array[where, channel, rows, columns] = values


class _Clock:
    """Adds the time since the last lap to a named entry of `timings`; does nothing without them."""

    def __init__(self, device: ArrayDevice, timings: dict[str, float] | None) -> None:
        self.device = device
        self.timings = timings
        self.last = time.perf_counter()

    def lap(self, name: str) -> None:
        if self.timings is None:
            return
        self.device.synchronize()
        now = time.perf_counter()
        self.timings[name] = self.timings.get(name, 0.0) + now - self.last
        self.last = now


def _slot_selector(slots: list[int], xp: Any) -> Any:
    """A slice when the slots are consecutive (a plain view), else an index array."""
    if slots == list(range(slots[0], slots[0] + len(slots))):
        return slice(slots[0], slots[0] + len(slots))
    return xp.asarray(slots)


def _stage(layout: _Layout, frame: Frame, row: np.ndarray) -> None:
    """Copy one frame's pixels into its staging row."""
    if layout.kind == "rgb24":
        row[...] = frame.image
        return
    offset = 0
    for number, plane in enumerate(frame.decoded.planes):  # type: ignore[union-attr]
        width, height = plane.width, plane.height
        if layout.kind == NV12 and number == 1:
            width *= 2  # U and V side by side: two bytes per chroma sample
        pixels = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[:height, :width]
        row[offset : offset + width * height].reshape(height, width)[...] = pixels
        offset += width * height
