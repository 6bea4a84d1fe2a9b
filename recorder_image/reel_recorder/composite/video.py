"""The composite picture: every participant's video decoded, scaled into its tile, composed into one frame.

``VideoCompositor`` keeps, per participant, a decoder (FFmpeg through PyAV: H.264, or VP8/VP9 since nothing
here depends on the codec), the pictures decoded lately, already scaled to the participant's current tile,
and the last one shown. ``compose(t)`` builds the picture of recording time ``t``: the background, each
participant's latest picture whose time is at most ``t`` + half an output frame (so an event is shown at the
output frame nearest to it, not up to a whole frame late), letterboxed in its cell; a tile with the
participant's name for someone without video (camera off, audio only, nothing decoded yet); names on the
tiles when ``show_names``. A participant whose video stalls keeps their last picture. A picture decoded after
the picture of its time was composed (it came later than the engine's ``latency``: a busy node, a network
stall) is shown from the next composed picture on, late; ``late_pictures`` counts them.

Who is shown follows the timeline: a participant is in the pictures from ``joined_at`` until ``left_at``
(recording clock), in the order of ``joined_at``; the layout (layout.py) is recomputed when that set or the
speaker changes.

Threads and the lock:
- ``decode(pid, packet, t)`` is called by that participant's ingest thread (one per participant). The decoder
  and the participant's scaler belong to that thread and are used without the lock; the lock is taken
  briefly to find the participant, to read their current cell, and to append the scaled picture to their
  queue. A picture decoded before the participant has a cell (they joined moments ago) is queued unscaled;
  ``compose`` scales it once.
- ``compose(t)``, ``set_speaker`` run on the compositor thread (engine.py); ``add``, ``remove``,
  ``video_ended`` on any thread. ``compose`` takes the lock to pick each participant's picture and to
  publish new cells, and builds the frame outside it: queued pictures are never modified, only replaced.
- ``_lock`` guards the participants dict and, per participant, ``cell``, ``queue``, ``shown``, ``last``,
  ``left_at``, ``ended_at`` and the counters; and ``late_pictures``, the speaker, the layout cache and
  ``_composed_at``. The ``LabelCache`` and the compositor's own scaler are the compositor thread's.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from fractions import Fraction

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from ..media import h264
from . import labels
from .layout import Rect, cells, fit

log = logging.getLogger(__name__)

TB = Fraction(1, 90000)
QUEUE = 64  # decoded pictures kept per participant, waiting for their time (a bound, not a target)
Planes = tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class Picture:
    """One decoded picture, scaled for a cell: yuv420p planes (read-only by convention), its source size."""

    t: float
    src: tuple[int, int]
    rect: Rect  # where it goes (its w, h are the planes' size); empty: not scaled yet
    planes: Planes | None
    frame: av.VideoFrame | None = None  # the decoded picture, kept only while it has no cell to be scaled for


def plane_views(frame: av.VideoFrame) -> Planes:
    """numpy views (no copy) of a yuv420p frame's planes, without the line padding."""
    out = []
    for p in frame.planes:
        a = np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)
        out.append(a[:, : p.width])
    return tuple(out)


def frame_of(planes: Planes) -> av.VideoFrame:
    h, w = planes[0].shape
    frame = av.VideoFrame(w, h, "yuv420p")
    for dst, src in zip(plane_views(frame), planes, strict=True):
        dst[...] = src
    return frame


def _is_keyframe(codec: str, packet: av.Packet, data: bytes) -> bool:
    if codec == "h264":
        return bool(packet.is_keyframe) and h264.is_idr(data)
    if codec == "vp8":  # the frame tag's first bit: 0 for a key frame (RFC 6386 9.1)
        return bool(data) and not data[0] & 1
    return bool(packet.is_keyframe)


@dataclass
class _Participant:
    pid: Hashable
    name: str
    joined_at: float
    codec: str
    request_keyframe: Callable[[], None] | None = None
    left_at: float | None = None
    # the ingest thread's own
    decoder: av.CodecContext | None = None
    scaler: VideoReformatter = field(default_factory=VideoReformatter)
    need_key: bool = True
    # under the lock
    cell: Rect | None = None
    queue: deque = field(default_factory=lambda: deque(maxlen=QUEUE))
    shown: Picture | None = None
    last: tuple[float, av.VideoFrame] | None = None  # the newest decoded picture, unscaled (for a new cell)
    ended_at: float | None = None  # video ended (camera off) at this time: a name tile from then on
    decoded: int = 0
    errors: int = 0
    late: int = 0  # pictures decoded after the composed picture of their time


class VideoCompositor:
    def __init__(self, width: int, height: int, *, fps: float, layout: str = "grid",
                 background: str | labels.RGB = "#000000", show_names: bool = True):
        if width % 2 or height % 2 or width < 16 or height < 16:
            raise ValueError(f"composite size {width}x{height}: width and height must be even, at least 16")
        self.width, self.height, self.fps = width, height, fps
        self.layout = layout
        self.show_names = show_names
        self.background = labels.yuv_of(background)
        self.name_tile = labels.yuv_of(labels.NAME_TILE)
        self._lock = threading.Lock()
        self._parts: dict[Hashable, _Participant] = {}
        self._speaker: Hashable | None = None
        self._cells_key: tuple | None = None
        self._cells: dict[Hashable, Rect] = {}
        self._composed_at = -1e18  # the time of the last composed picture
        self.late_pictures = 0  # pictures that came after the composed picture of their time (all participants)
        self._labels = labels.LabelCache()
        self._scaler = VideoReformatter()  # the compositor thread's, for pictures that must follow a new cell

    # -- who is shown (any thread) ---------------------------------------------------------------------------
    def add(self, pid: Hashable, name: str, joined_at: float, *, codec: str = "h264",
            request_keyframe: Callable[[], None] | None = None) -> None:
        with self._lock:
            old = self._parts.get(pid)
            if old is not None and old.left_at is None:
                old.name = name
                return
            self._parts[pid] = _Participant(pid, name, joined_at, codec, request_keyframe)

    def remove(self, pid: Hashable, at: float) -> None:
        """``pid`` leaves the pictures from time ``at`` on (forgotten once ``compose`` passes it)."""
        with self._lock:
            part = self._parts.get(pid)
            if part is not None and part.left_at is None:
                part.left_at = at

    def video_ended(self, pid: Hashable, at: float) -> None:
        """The participant stopped sending video (camera off): their name tile from ``at`` until video is back."""
        with self._lock:
            part = self._parts.get(pid)
            if part is not None:
                part.ended_at = at

    def set_speaker(self, pid: Hashable | None) -> None:
        with self._lock:
            self._speaker = pid

    # -- decoding (the participant's ingest thread) ------------------------------------------------------------
    def decode(self, pid: Hashable, packet: av.Packet, t: float) -> None:
        """Decode one packet whose picture plays at recording time ``t``; keeps the picture, scaled to its cell."""
        with self._lock:
            part = self._parts.get(pid)
        if part is None or part.left_at is not None:
            return
        data = bytes(packet)
        key = _is_keyframe(part.codec, packet, data)
        if part.need_key and not key:
            if part.request_keyframe is not None:
                part.request_keyframe()
            return
        if part.decoder is None:
            part.decoder = av.CodecContext.create(part.codec, "r")
            part.decoder.thread_count = 1  # this thread is the parallelism; codec threads would add delay
        pkt = av.Packet(data)
        pkt.pts = pkt.dts = round(t / TB)
        pkt.time_base = TB
        try:
            frames = part.decoder.decode(pkt)
        except av.FFmpegError as err:
            self._broken(part, f"{type(err).__name__}: {err}")
            return
        part.need_key = False
        for frame in frames:
            if frame.is_corrupt:  # concealed damage (a lost packet): wait for the next keyframe
                self._broken(part, "corrupt picture")
                return
            self._keep(part, frame, float(frame.pts * TB) if frame.pts is not None else t)

    def _broken(self, part: _Participant, why: str) -> None:
        part.errors += 1
        part.need_key = True
        if part.errors <= 3 or part.errors % 100 == 0:
            log.info("composite: video of %r: %s (%d); keeping the last picture until the next keyframe",
                     part.name, why, part.errors)
        if part.request_keyframe is not None:
            part.request_keyframe()

    def _keep(self, part: _Participant, frame: av.VideoFrame, t: float) -> None:
        with self._lock:
            cell = part.cell
        src = (frame.width, frame.height)
        rect = fit(*src, cell) if cell is not None else None
        if rect is not None and not rect.empty:
            scaled = part.scaler.reformat(frame, width=rect.w, height=rect.h, format="yuv420p", threads=1)
            picture = Picture(t, src, rect, plane_views(scaled))
        else:  # not in the layout yet (joined moments ago): compose scales it once it has a cell
            picture = Picture(t, src, Rect(0, 0, 0, 0), None, frame)
        with self._lock:
            if cell is None and part.joined_at <= self._composed_at:
                picture = None  # not shown (beyond MAX_TILES): only ``last`` is kept
            part.last = (t, frame)
            part.decoded += 1
            if part.ended_at is not None and t >= part.ended_at:
                part.ended_at = None  # video is back
            late = picture is not None and t <= self._composed_at + 0.5 / self.fps
            if late:
                part.late += 1
                self.late_pictures += 1
            if picture is not None:
                part.queue.append(picture)
        if late and (part.late <= 3 or part.late % 100 == 0):
            log.info("composite: a picture of %r (%.3f s) came after the composite picture of its time: shown late "
                     "(%d so far)", part.name, t, part.late)

    # -- composing (the compositor thread) ---------------------------------------------------------------------
    def compose(self, t: float) -> av.VideoFrame:
        """The composite picture of recording time ``t`` (yuv420p, width x height)."""
        horizon = t + 0.5 / self.fps
        with self._lock:
            for pid in [p.pid for p in self._parts.values() if p.left_at is not None and p.left_at <= t]:
                del self._parts[pid]
            shown = sorted((p for p in self._parts.values() if p.joined_at <= t),
                           key=lambda p: (p.joined_at, str(p.pid)))
            key = (tuple(p.pid for p in shown), self._speaker)
            if key != self._cells_key:
                self._cells_key, self._cells = key, cells(self.layout, self.width, self.height, key[0], key[1])
            self._composed_at = t
            for p in self._parts.values():  # everyone's queue, shown or not: keep only what is still ahead
                p.cell = self._cells.get(p.pid)
                while p.queue and p.queue[0].t <= horizon:
                    p.shown = p.queue.popleft()
                if p.shown is None and p.last is not None and p.last[0] <= horizon:
                    frame = p.last[1]  # decoded while not in the layout (beyond MAX_TILES)
                    p.shown = Picture(p.last[0], (frame.width, frame.height), Rect(0, 0, 0, 0), None, frame)
            plan = []
            for p in shown:
                if p.cell is None:
                    continue  # beyond the layout's MAX_TILES
                video = p.shown is not None and (p.ended_at is None or p.ended_at > t)
                plan.append((p, p.cell, p.shown if video else None, p.last))
        frame = av.VideoFrame(self.width, self.height, "yuv420p")
        planes = plane_views(frame)
        labels.fill(planes, Rect(0, 0, self.width, self.height), self.background)
        for part, cell, picture, last in plan:
            if picture is None:
                self._name_tile(planes, part.name, cell)
                continue
            picture = self._follow_cell(part, cell, picture, last)
            if picture is None:
                continue
            r = picture.rect
            for dst, src, div in zip(planes, picture.planes, (1, 2, 2), strict=True):
                dst[r.y // div:(r.y + r.h) // div, r.x // div:(r.x + r.w) // div] = src
            if self.show_names:
                self._name_label(planes, part.name, cell, r)
        frame.pict_type = av.video.frame.PictureType.NONE
        return frame

    def _follow_cell(self, part: _Participant, cell: Rect, picture: Picture, last) -> Picture | None:
        """The picture for ``cell``: as it is, or scaled (again) when it was decoded for another cell or none."""
        rect = fit(*picture.src, cell)
        if rect.empty:
            return None
        if rect == picture.rect:
            return picture
        if picture.frame is not None:
            source = picture.frame
        elif last is not None and last[0] == picture.t:
            source = last[1]  # the original, when this picture is the newest decoded one (a stalled participant)
        else:
            source = frame_of(picture.planes)  # a picture decoded before the layout changed: rarely seen
        scaled = self._scaler.reformat(source, width=rect.w, height=rect.h, format="yuv420p", threads=1)
        moved = Picture(picture.t, picture.src, rect, plane_views(scaled))
        with self._lock:
            if part.shown is picture:
                part.shown = moved
        return moved

    def _name_tile(self, planes: Planes, name: str, cell: Rect) -> None:
        inner = Rect(cell.x + 2, cell.y + 2, max(cell.w - 4, 0), max(cell.h - 4, 0))
        labels.fill(planes, inner, self.name_tile)
        patch = self._labels.get(name, labels.name_tile_size(cell), max_width=max(inner.w - 8, 0), box=False)
        if patch is not None:
            labels.blend(planes, patch, cell.x + (cell.w - patch.w) // 2, cell.y + (cell.h - patch.h) // 2)

    def _name_label(self, planes: Planes, name: str, cell: Rect, picture: Rect) -> None:
        margin = max(4, cell.h // 60) & ~1
        patch = self._labels.get(name, labels.label_size(cell), max_width=max(picture.w - 2 * margin, 0), box=True)
        if patch is not None:
            labels.blend(planes, patch, picture.x + margin, picture.y + picture.h - patch.h - margin)

    # -- observations ------------------------------------------------------------------------------------------
    def stats(self) -> dict[Hashable, dict]:
        with self._lock:
            return {p.pid: {"decoded": p.decoded, "errors": p.errors, "late": p.late} for p in self._parts.values()}

    def shown_ids(self) -> list[Hashable]:
        """Who is in the current layout, in its order (for tests and status)."""
        with self._lock:
            return list(self._cells_key[0]) if self._cells_key else []

    def cell_of(self, pid: Hashable) -> Rect | None:
        with self._lock:
            return self._cells.get(pid)
