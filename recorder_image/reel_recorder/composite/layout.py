"""Where each participant goes in the composite picture: pure geometry, no media, no threads.

Two layouts, both given the output size, the participants in a stable order (by join time) and, for
``speaker``, who speaks:

- ``grid``: 1 → the whole frame, 2 → side by side, 3-4 → 2x2, N → ``ceil(sqrt(N))`` columns and as many
  rows as needed; an incomplete last row is centred. At most ``MAX_TILES`` (16) participants are shown, the
  first ones in the given order.
- ``speaker``: the speaker in one large cell, the others in a strip of small cells (on the right of a
  landscape frame, at the bottom of a portrait one), centred along the strip.

A *cell* is the area a participant owns; a picture keeps its aspect ratio inside it (``fit``: letterboxed or
pillarboxed, centred). Every coordinate and size is even, as yuv420p needs (its chroma planes have half the
resolution), and the cells of a grid tile the frame without gaps. The video compositor (video.py) calls these
functions under its lock; they keep no state.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

MAX_TILES = 16
GRID = "grid"
SPEAKER = "speaker"
LAYOUTS = (GRID, SPEAKER)
STRIP_SHARE = 5  # the speaker layout's strip is 1/5 of the frame's width (landscape) or height (portrait)
STRIP_SLOTS = 4  # ... and has room for at least this many cells, so two others do not get huge cells


@dataclass(frozen=True)
class Rect:
    x: int
    y: int
    w: int
    h: int

    @property
    def empty(self) -> bool:
        return self.w <= 0 or self.h <= 0


def _even(v: float) -> int:
    """The even integer at or below ``v`` (never negative)."""
    return max(0, int(v) & ~1)


def _splits(total: int, parts: int) -> list[int]:
    """``parts + 1`` even boundaries from 0 to ``total`` (even), as evenly spaced as possible."""
    return [_even(total * i / parts) if i < parts else _even(total) for i in range(parts + 1)]


def grid_shape(n: int) -> tuple[int, int]:
    """(columns, rows) of a grid for ``n`` tiles: 1 → 1x1, 2 → 2x1, 3-4 → 2x2, 5-6 → 3x2, ..."""
    if n <= 0:
        return 0, 0
    cols = math.ceil(math.sqrt(n))
    return cols, math.ceil(n / cols)


def grid(width: int, height: int, ids: Sequence[Hashable]) -> dict[Hashable, Rect]:
    """Each shown participant's cell in a grid (the first ``MAX_TILES`` of ``ids``)."""
    ids = list(ids)[:MAX_TILES]
    cols, rows = grid_shape(len(ids))
    if not ids:
        return {}
    xs, ys = _splits(width, cols), _splits(height, rows)
    cells: dict[Hashable, Rect] = {}
    for i, pid in enumerate(ids):
        row, col = divmod(i, cols)
        in_row = min(cols, len(ids) - row * cols)
        if in_row < cols:  # the last row is incomplete: centre it by shifting half a cell per missing cell
            shift = (cols - in_row) * width / cols / 2
            x0, x1 = _even(shift + col * width / cols), _even(shift + (col + 1) * width / cols)
        else:
            x0, x1 = xs[col], xs[col + 1]
        cells[pid] = Rect(x0, ys[row], x1 - x0, ys[row + 1] - ys[row])
    return cells


def speaker(width: int, height: int, ids: Sequence[Hashable], speaker_id: Hashable | None) -> dict[Hashable, Rect]:
    """The speaker's large cell and the others' strip cells (at most ``MAX_TILES`` shown in all).

    An unknown or absent ``speaker_id`` means the first participant. One participant gets the whole frame.
    """
    ids = list(ids)
    if not ids:
        return {}
    main = speaker_id if speaker_id in ids else ids[0]
    others = [p for p in ids if p != main][: MAX_TILES - 1]
    if not others:
        return {main: Rect(0, 0, _even(width), _even(height))}
    slots = max(len(others), STRIP_SLOTS)
    cells: dict[Hashable, Rect] = {}
    if width >= height:  # strip on the right, cells stacked top to bottom
        strip = _even(width / STRIP_SHARE)
        cells[main] = Rect(0, 0, _even(width) - strip, _even(height))
        bounds = _splits(height, slots)
        offset = _even((slots - len(others)) * height / slots / 2)
        for i, pid in enumerate(others):
            cells[pid] = Rect(_even(width) - strip, bounds[i] + offset, strip, bounds[i + 1] - bounds[i])
    else:  # strip at the bottom, cells side by side
        strip = _even(height / STRIP_SHARE)
        cells[main] = Rect(0, 0, _even(width), _even(height) - strip)
        bounds = _splits(width, slots)
        offset = _even((slots - len(others)) * width / slots / 2)
        for i, pid in enumerate(others):
            cells[pid] = Rect(bounds[i] + offset, _even(height) - strip, bounds[i + 1] - bounds[i], strip)
    return cells


def cells(kind: str, width: int, height: int, ids: Sequence[Hashable],
          speaker_id: Hashable | None = None) -> dict[Hashable, Rect]:
    """The cells of layout ``kind`` (``grid`` or ``speaker``)."""
    if kind == GRID:
        return grid(width, height, ids)
    if kind == SPEAKER:
        return speaker(width, height, ids, speaker_id)
    raise ValueError(f"unknown layout {kind!r}: one of {', '.join(LAYOUTS)}")


def fit(src_w: int, src_h: int, cell: Rect) -> Rect:
    """The largest rectangle of the source's aspect ratio inside ``cell``, centred, even-aligned."""
    if src_w <= 0 or src_h <= 0 or cell.empty:
        return Rect(cell.x, cell.y, 0, 0)
    scale = min(cell.w / src_w, cell.h / src_h)
    w = min(_even(src_w * scale + 1), cell.w)  # round to the nearest even size, never beyond the cell
    h = min(_even(src_h * scale + 1), cell.h)
    x = cell.x + _even((cell.w - w) / 2)
    y = cell.y + _even((cell.h - h) / 2)
    return Rect(x, y, w, h)
