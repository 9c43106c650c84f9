"""Hardware decoding (FFmpeg's hwaccel, NVDEC above all): opening a source with it, and noticing,
counting and saying so when it decodes on the CPU after all.

What FFmpeg and PyAV do on their own, and what is done here about it:

- Decode threads. FFmpeg's nvdec sizes its pool of decode surfaces as the stream's decoded picture
  buffer (up to 16 pictures for H.264 and HEVC) plus a few spare, plus one per frame thread, and
  NVDEC refuses more than 32. PyAV leaves `thread_count` at 0, which FFmpeg takes as one thread per
  core (up to 16), so on a many-core machine the hardware decoder fails to start and, since
  software fallback is allowed, FFmpeg decodes on the CPU without a word. With a hwaccel the
  decoder gets at most HARDWARE_DECODE_THREADS threads: 16 + 8 + spare stays under 32 (the threads
  only parse; the GPU decodes).
- CUDA contexts. FFmpeg's CUDA device creates a context of its own each time one is opened: one per
  source and per reconnect, each with its own memory and a context switch. `primary_ctx=1` makes
  it retain the GPU's primary context instead, the one the CUDA runtime (CuPy, torch) uses: one per
  GPU, shared by every source and the model.
- The GPU. A source decodes on `hwaccel_device` (the model's "cuda:N" index), not always on GPU 0.
- Failures at open. PyAV creates the hardware device while opening the input, so one `av.open`
  fails for either. FFmpeg's errors from opening or probing the input name it (`filename` is the
  URL); those from creating the device do not. Only the latter (`hardware_failed`) turn hardware
  decoding off for the source; a network error raises as any failed open does and the source's
  retry tries the hardware again.
- Fallbacks FFmpeg does not report: PyAV decodes in software when the codec has no hardware
  decoder of that type (`codec_context.is_hwaccel` is False), and FFmpeg does when the hardware
  decoder fails to start at the first frame (frames then come in a software pixel format, not the
  hardware's nv12/p010/cuda). Each is logged (a warning the first time, debug after) and counted
  in the source's `stats.hardware_fallbacks` (/metrics: streamer_source_hardware_fallbacks_total),
  once per connection.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable

from .stats import SourceStats

log = logging.getLogger(__name__)

NVDEC_MAX_SURFACES = 32  # FFmpeg's nvdec.c refuses a larger pool
HARDWARE_DECODE_THREADS = 8  # 16 (largest H.264/HEVC picture buffer) + 8 + FFmpeg's spare < 32
# Pixel formats a hardware decoder's frames come in: the device's own ("cuda", "vaapi", ...), or
# what av_hwframe_transfer_data gives on the host (NVDEC, VAAPI, QSV, VideoToolbox: semi-planar).
HARDWARE_OUTPUT_FORMATS = ("nv12", "p010le", "p016le", "nv16", "p210le", "p410le")

Opener = Callable[[Any], Any]  # opens the input with this HWAccel (None: without one), returns the container


def hardware_decode_threads(cpu_count: int | None = None) -> int:
    """Decode threads for a hardware decoder: one per core, at most HARDWARE_DECODE_THREADS."""
    if cpu_count is None:  # the cores this process may use (Linux), else all of them (macOS: VideoToolbox)
        cpu_count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    cores = cpu_count
    return max(1, min(cores, HARDWARE_DECODE_THREADS))


def hardware_failed(exc: BaseException) -> bool:
    """Whether a failed open with a hwaccel failed on the hardware (no driver, no device, no decoder
    for it), not on the input (network, server, file): FFmpeg's errors about the input name it."""
    import av

    if isinstance(exc, (NotImplementedError, RuntimeError)):  # PyAV: no usable hardware config
        return True
    return isinstance(exc, av.error.FFmpegError) and not getattr(exc, "filename", None)


class HardwareDecoding:
    """One source's hardware decoding: `open` opens its input with it, `check` looks at each
    connection's first frame. `device_type` is None when it is off: never asked for, or the hardware
    proved unavailable (then for good, for this source)."""

    def __init__(
        self,
        device_type: str | None,
        device: int | None,
        stats: SourceStats,
        what: str,
        scrub: Callable[[BaseException], str],
        cpu_count: int | None = None,
    ) -> None:
        self.device_type = device_type
        self.device = device
        self.stats = stats
        self.what = what
        self.scrub = scrub
        self.threads = hardware_decode_threads(cpu_count)
        self._warned = False
        self._first_frame_due = False  # this connection decodes on the hardware until its first frame says otherwise
        self._hardware_format: str | None = None

    def accel(self) -> Any:
        """The HWAccel to open with: the source's GPU, and the GPU's primary CUDA context."""
        from av.codec.hwaccel import HWAccel

        options = {"primary_ctx": "1"} if self.device_type == "cuda" else None
        device = None if self.device is None else str(self.device)
        return HWAccel(device_type=self.device_type, device=device, allow_software_fallback=True, options=options)

    def open(self, open_input: Opener) -> Any:
        """The input opened with hardware decoding when it is on (and may be), else without."""
        self._first_frame_due = False
        if self.device_type is None:
            return open_input(None)
        import av

        try:
            container = open_input(self.accel())
        except (av.error.FFmpegError, OSError, ValueError, NotImplementedError, RuntimeError) as exc:
            if not hardware_failed(exc):
                raise  # the input's own failure: the source retries as for any open, hardware still on
            container = open_input(None)  # raises the input's error, if it has one too
            device_type, self.device_type = self.device_type, None
            self.fell_back(f"hardware decoding with {device_type} is not available here ({self.scrub(exc)})")
            return container
        self._configure(container)
        return container

    def check(self, frame: Any) -> None:
        """Look at a connection's first frame: a software pixel format means FFmpeg fell back."""
        if not self._first_frame_due:
            return
        self._first_frame_due = False
        name = frame.format.name
        if name not in HARDWARE_OUTPUT_FORMATS and name != self._hardware_format:
            self.fell_back(
                f"FFmpeg's {self.device_type} decoder did not start (frames come as {name}): too many decode "
                f"surfaces, or a profile or size the hardware does not decode"
            )

    def fell_back(self, why: str) -> None:
        self.stats.hardware_fallbacks += 1
        level = logging.DEBUG if self._warned else logging.WARNING
        log.log(level, "%s: %s: decoding on the CPU", self.what, why)
        self._warned = True

    def _configure(self, container: Any) -> None:
        """Cap the decode threads of a hardware-decoded stream (before its codec opens at the first
        packet), or count the stream PyAV decodes in software because its codec has no such decoder."""
        if not container.streams.video:
            return  # the source refuses it (no video stream)
        context = container.streams.video[0].codec_context
        if context is None or not context.is_hwaccel:
            codec = context.codec.name if context is not None else "its codec"
            self.fell_back(f"FFmpeg has no {self.device_type} decoder for {codec}")
            return
        context.thread_count = self.threads
        self.expect_hardware_frames(next(
            (config.format.name for config in context.codec.hardware_configs
             if config.device_type.name == self.device_type and config.format is not None),
            None,
        ))

    def expect_hardware_frames(self, hardware_format: str | None) -> None:
        """This connection decodes on the hardware (whose own pixel format is `hardware_format`, e.g.
        "cuda"): `check` then looks at its first frame."""
        self._hardware_format = hardware_format
        self._first_frame_due = True
