"""Whole frames only, for the WebRTC ingest (pure): was a frame aiortc hands over complete, and does it follow the
frame before it?

aiortc's jitter buffer hands over contiguous packets, but when it overflows or sees packets far out of order it
drops what it holds and starts again at the newest packet, possibly in the middle of a frame: what it hands over
next can be a frame without its beginning, and frames that refer to ones never handed over. Such frames must not be
stored (an H.264 decoder shows garbage until the next keyframe), as the forward path's RTP gate ensures (gate.py).

``FrameTracker`` sees every RTP packet of a stream as it arrives (sequence number, timestamp, marker, whether its
payload begins a NAL unit; retransmissions by their original sequence number) and judges each frame as it is handed
over (``judge``): whole (every sequence number from a packet that begins a NAL unit to the one with the marker bit)
and continuous (it begins right after the frame handed over before it). From a frame that is not, until a whole
keyframe, nothing is recorded; the caller asks for a keyframe.
"""

from __future__ import annotations

from dataclasses import dataclass

KEPT = 512  # RTP timestamps remembered


@dataclass
class _Frame:
    first: int  # extended sequence number of its first packet seen
    end: int | None = None  # ... of the packet with the marker bit
    count: int = 0  # distinct packets seen
    starts: bool = False  # its first packet begins a NAL unit


def h264_starts(payload: bytes) -> bool:
    """The RTP payload (RFC 6184) begins a NAL unit: a single NAL unit, an aggregation, or an FU-A with S set."""
    if not payload:
        return False
    kind = payload[0] & 0x1F
    if kind in (28, 29):
        return len(payload) > 1 and bool(payload[1] & 0x80)
    return 1 <= kind <= 24


class FrameTracker:
    def __init__(self):
        self._frames: dict[int, _Frame] = {}
        self._seen: set[int] = set()  # extended sequence numbers, recent
        self._max: int | None = None
        self._last_end: int | None = None  # end of the frame judged before
        self.broken = False  # a frame was bad: nothing until a whole keyframe
        self.incomplete = 0
        self.dropped = 0

    def _extend(self, seq: int) -> int:
        if self._max is None:
            self._max = seq
            return seq
        ext = self._max + ((seq - self._max + 0x8000) % 0x10000 - 0x8000)
        self._max = max(self._max, ext)
        return ext

    def packet(self, seq: int, timestamp: int, marker: bool, starts: bool) -> None:
        """An RTP packet of the stream (a retransmission: its original sequence number)."""
        ext = self._extend(seq)
        if ext in self._seen:
            return
        self._seen.add(ext)
        frame = self._frames.get(timestamp)
        if frame is None:
            frame = self._frames[timestamp] = _Frame(first=ext)
            while len(self._frames) > KEPT:
                self._frames.pop(next(iter(self._frames)))
            if len(self._seen) > 8 * KEPT:
                self._seen = {s for s in self._seen if s > self._max - 4 * KEPT}
        if ext < frame.first:
            frame.first = ext
            frame.starts = starts
        elif ext == frame.first:
            frame.starts = starts
        frame.count += 1
        if marker:
            frame.end = ext

    def judge(self, timestamp: int, keyframe: bool) -> bool:
        """Record the frame of ``timestamp`` that aiortc hands over? False while broken (counted). A frame none of
        whose packets was seen (cannot happen while every packet passes ``packet``) is not judged."""
        frame = self._frames.get(timestamp)
        if frame is None:
            return not self.broken or keyframe
        whole = frame.end is not None and frame.starts and frame.count == frame.end - frame.first + 1
        follows = self._last_end is None or frame.first == self._last_end + 1
        self._last_end = frame.end  # None (its end unknown): the next frame cannot be shown to follow
        if not whole:
            self.incomplete += 1
        if whole and (follows or keyframe) and (not self.broken or keyframe):
            self.broken = False
            return True
        self.broken = True
        self.dropped += 1
        return False
