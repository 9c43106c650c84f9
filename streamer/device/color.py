"""YUV to RGB as FFmpeg's scaler converts: the frame's matrix and range, then rounding to 8 bits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# PyAV's colorspace numbers (AVColorSpace) and the luma weights (Kr, Kb) of each matrix.
_LUMA_WEIGHTS = {
    1: (0.2126, 0.0722),  # BT.709
    4: (0.30, 0.11),  # FCC
    7: (0.212, 0.087),  # SMPTE 240M
    9: (0.2627, 0.0593),  # BT.2020 non-constant luminance
    10: (0.2627, 0.0593),  # BT.2020 constant luminance (FFmpeg converts it as non-constant)
}
_BT601 = (0.299, 0.114)  # unspecified, BT.470BG, SMPTE 170M: FFmpeg's default
_FULL_RANGE = 2  # AVCOL_RANGE_JPEG
_FULL_RANGE_FORMATS = ("yuvj420p",)


@dataclass(frozen=True)
class ColorMatrix:
    """R = y + rv * v, G = y + gu * u + gv * v, B = y + bu * u, from y = (Y - y_offset) * y_gain
    and u, v = (U or V - 128) * c_gain."""

    y_offset: float
    y_gain: float
    c_gain: float
    rv: float
    gu: float
    gv: float
    bu: float

    @classmethod
    def of(cls, colorspace: int, full_range: bool) -> ColorMatrix:
        kr, kb = _LUMA_WEIGHTS.get(colorspace, _BT601)
        kg = 1.0 - kr - kb
        y_offset, y_gain, c_gain = (0.0, 1.0, 1.0) if full_range else (16.0, 255 / 219, 255 / 224)
        return cls(
            y_offset,
            y_gain,
            c_gain,
            rv=2 * (1 - kr),
            gu=-2 * kb * (1 - kb) / kg,
            gv=-2 * kr * (1 - kr) / kg,
            bu=2 * (1 - kb),
        )

    @classmethod
    def of_frame(cls, decoded: Any) -> ColorMatrix:
        """The matrix FFmpeg's scaler uses for a decoded PyAV frame."""
        full = decoded.color_range == _FULL_RANGE or decoded.format.name in _FULL_RANGE_FORMATS
        return cls.of(int(decoded.colorspace), full)

    def to_rgb(self, y: Any, u: Any, v: Any) -> tuple[Any, Any, Any]:
        """float32 Y, U, V planes (any shape) to R, G, B, not yet rounded or clipped."""
        y = (y - self.y_offset) * self.y_gain
        u = (u - 128.0) * self.c_gain
        v = (v - 128.0) * self.c_gain
        return y + self.rv * v, y + self.gu * u + self.gv * v, y + self.bu * u
