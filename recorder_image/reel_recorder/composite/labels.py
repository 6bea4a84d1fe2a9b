"""Names on the composite picture, and colours: text rendered once with Pillow, kept as small YUV patches.

PyAV's FFmpeg has no ``drawtext`` filter, so a name is drawn with Pillow (its default font, scalable when
Pillow has FreeType) into an RGBA image, converted once to yuv420p planes plus an alpha mask, and blended
into the composed frame with numpy each time it is shown. ``LabelCache`` keeps the patches by (text, size,
style), so a participant's label costs one render for as long as their tile keeps its size.

Colours are RGB; the composite is yuv420p with BT.601 limited-range coefficients (what swscale produces
from the decoded pictures by default).

Threads: only the compositor thread uses ``LabelCache`` (video.py ``compose``); it has no lock of its own.
``blend`` and ``fill`` work on arrays the caller owns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .layout import Rect

RGB = tuple[int, int, int]
_HEX = re.compile(r"#?([0-9a-fA-F]{6})")
LABEL_BOX: RGB = (0, 0, 0)  # behind a name on a video tile, at LABEL_OPACITY
LABEL_OPACITY = 0.6
TEXT: RGB = (255, 255, 255)
NAME_TILE: RGB = (48, 52, 60)  # a participant without video


def parse_colour(value: str | RGB) -> RGB:
    """``"#RRGGBB"``, ``"RRGGBB"`` or an (r, g, b) tuple of 0-255."""
    if isinstance(value, str):
        m = _HEX.fullmatch(value.strip())
        if not m:
            raise ValueError(f"colour {value!r}: expected #RRGGBB")
        h = m.group(1)
        return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)
    r, g, b = value
    if not all(0 <= c <= 255 for c in (r, g, b)):
        raise ValueError(f"colour {value!r}: components must be 0-255")
    return int(r), int(g), int(b)


def rgb_to_yuv(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BT.601 limited range: float arrays of Y, U, V from an array whose last axis is R, G, B (0-255)."""
    rgb = rgb.astype(np.float32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    u = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
    v = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255
    return y, u, v


def yuv_of(colour: str | RGB) -> tuple[int, int, int]:
    y, u, v = rgb_to_yuv(np.array(parse_colour(colour), dtype=np.float32))
    return round(float(y)), round(float(u)), round(float(v))


def fill(planes: tuple[np.ndarray, np.ndarray, np.ndarray], rect: Rect, yuv: tuple[int, int, int]) -> None:
    """Paint ``rect`` (even-aligned) of a yuv420p picture's planes with one colour."""
    y, u, v = planes
    y[rect.y:rect.y + rect.h, rect.x:rect.x + rect.w] = yuv[0]
    cy, cx, ch, cw = rect.y // 2, rect.x // 2, rect.h // 2, rect.w // 2
    u[cy:cy + ch, cx:cx + cw] = yuv[1]
    v[cy:cy + ch, cx:cx + cw] = yuv[2]


@dataclass(frozen=True)
class Patch:
    """A rendered label: yuv420p planes (uint8) and alpha masks (0-255) at full and chroma resolution."""

    y: np.ndarray
    u: np.ndarray
    v: np.ndarray
    alpha: np.ndarray
    alpha_c: np.ndarray

    @property
    def w(self) -> int:
        return self.y.shape[1]

    @property
    def h(self) -> int:
        return self.y.shape[0]


@lru_cache(maxsize=32)
def _font(size: int):
    from PIL import ImageFont  # imported here: the recorder needs Pillow only when it composes

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ValueError, OSError):  # an old Pillow or one without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def render(text: str, size: int, *, max_width: int, box: bool) -> Patch | None:
    """``text`` in white, ``size`` px high, at most ``max_width`` wide (shortened with "…"), on a dark box
    when ``box``. None when nothing fits."""
    from PIL import Image, ImageDraw

    font = _font(max(size, 6))
    pad = max(2, size // 4)
    shown = text
    while shown:
        left, top, right, bottom = font.getbbox(shown)
        if right - left + 2 * pad <= max_width:
            break
        shown = shown[:-2] + "…" if len(shown) > 2 else ""
    if not shown:
        return None
    w = (right - left + 2 * pad + 1) & ~1
    h = (bottom - top + 2 * pad + 1) & ~1
    img = Image.new("RGBA", (w, h), (*LABEL_BOX, round(255 * LABEL_OPACITY) if box else 0))
    ImageDraw.Draw(img).text((pad - left, pad - top), shown, font=font, fill=(*TEXT, 255))
    rgba = np.asarray(img, dtype=np.uint8)
    yf, uf, vf = rgb_to_yuv(rgba[..., :3])
    alpha = rgba[..., 3].astype(np.uint16)
    # chroma at half resolution: average each 2x2 block, weighting colour by its alpha
    a4 = alpha.reshape(h // 2, 2, w // 2, 2).astype(np.float32)
    a_sum = a4.sum(axis=(1, 3))
    weights = np.maximum(a_sum, 1)
    uc = (uf.reshape(h // 2, 2, w // 2, 2) * a4).sum(axis=(1, 3)) / weights
    vc = (vf.reshape(h // 2, 2, w // 2, 2) * a4).sum(axis=(1, 3)) / weights
    return Patch(y=np.clip(yf + 0.5, 0, 255).astype(np.uint8), u=np.clip(uc + 0.5, 0, 255).astype(np.uint8),
                 v=np.clip(vc + 0.5, 0, 255).astype(np.uint8), alpha=alpha,
                 alpha_c=np.clip(a_sum / 4 + 0.5, 0, 255).astype(np.uint16))


def _mix(dst: np.ndarray, src: np.ndarray, alpha: np.ndarray) -> None:
    d = dst.astype(np.uint16)
    dst[...] = ((d * (255 - alpha) + src.astype(np.uint16) * alpha + 127) // 255).astype(np.uint8)


def blend(planes: tuple[np.ndarray, np.ndarray, np.ndarray], patch: Patch, x: int, y: int) -> None:
    """Blend ``patch`` into the picture with its top-left corner at (x, y) (made even; clipped to the picture)."""
    py, pu, pv = planes
    x, y = max(0, x & ~1), max(0, y & ~1)
    w = min(patch.w, py.shape[1] - x) & ~1
    h = min(patch.h, py.shape[0] - y) & ~1
    if w <= 0 or h <= 0:
        return
    _mix(py[y:y + h, x:x + w], patch.y[:h, :w], patch.alpha[:h, :w])
    cy, cx, ch, cw = y // 2, x // 2, h // 2, w // 2
    _mix(pu[cy:cy + ch, cx:cx + cw], patch.u[:ch, :cw], patch.alpha_c[:ch, :cw])
    _mix(pv[cy:cy + ch, cx:cx + cw], patch.v[:ch, :cw], patch.alpha_c[:ch, :cw])


class LabelCache:
    """Rendered labels by (text, size, width limit, box); the compositor thread's only."""

    def __init__(self, limit: int = 256):
        self._patches: dict[tuple, Patch | None] = {}
        self._limit = limit

    def get(self, text: str, size: int, *, max_width: int, box: bool) -> Patch | None:
        key = (text, size, max_width, box)
        if key not in self._patches:
            if len(self._patches) >= self._limit:  # sizes change with the layout: forget the old ones
                self._patches.clear()
            self._patches[key] = render(text, size, max_width=max_width, box=box)
        return self._patches[key]


def label_size(cell: Rect) -> int:
    """Text height for a name on a cell of this size: readable on small tiles, modest on large ones."""
    return max(10, min(28, cell.h // 14))


def name_tile_size(cell: Rect) -> int:
    """Text height for the name in the middle of a tile without video."""
    return max(12, min(48, cell.h // 8))
