"""One clock for the whole recording, and per-stream alignment onto it.

Janus's RTP forwarders carry no RTCP sender reports, so the RTP timestamps of a participant's audio and
video streams are unrelated numbers. Every stream is therefore placed on the recording's wall clock
(``time.monotonic()`` since the recorder started) by the time its packets arrive. The first packets a
demuxer returns may have waited in its probe buffer, so a single arrival time would be late; instead the
aligner watches a short window of packets and keeps the smallest ``arrival - media_time``: the packet that
waited least. Afterwards the offset is fixed, so timestamps stay exactly as the sender spaced them.

A run's end (a stop, a pause) is one instant of the recording clock for every stream: ``StreamAligner.cut``
(ingest/cut.py sets it) drops what would be placed at or after it, and tells whether the stream has delivered
everything before it (``behind``): a sender's video can run late against its audio (a busy encoder, a pacer),
and what it had captured before the stop is still on its way.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


class RecordingClock:
    """Seconds since the recording started (monotonic)."""

    def __init__(self, origin: float | None = None):
        self.origin = time.monotonic() if origin is None else origin

    def now(self) -> float:
        return time.monotonic() - self.origin


@dataclass
class StreamAligner:
    """Maps a stream's media time (seconds) onto the recording clock.

    Packets are held while the window is open (``window`` seconds of arrival time, at least
    ``min_packets`` packets); ``push`` returns the packets that are ready, with their recording time.

    Threads: the stream's media thread calls ``push`` and ``flush``; ``cut`` is set once by another (the event
    loop's ``cut_streams``), which then reads ``last`` and ``arrived`` (single attributes: no lock).
    """

    name: str = ""
    window: float = 0.5
    min_packets: int = 8
    offset: float | None = None
    cut: float | None = None  # the run's end: nothing placed at or after it is released
    last: float | None = None  # the recording time of the latest item placed (released or cut)
    arrived: float | None = None  # the arrival of the latest item pushed
    _first_arrival: float | None = None
    _held: list = field(default_factory=list)
    _best: float = float("inf")

    def push(self, item, media_time: float, arrival: float, *, measure: bool = True) -> list[tuple[object, float]]:
        """``measure=False``: place the item, but its media time is not to be trusted for the offset."""
        self.arrived = arrival
        if self.offset is not None:
            return self._place([(item, media_time)])
        if self._first_arrival is None:
            self._first_arrival = arrival
        if measure:
            self._best = min(self._best, arrival - media_time)
        self._held.append((item, media_time))
        if arrival - self._first_arrival >= self.window and len(self._held) >= self.min_packets:
            return self.flush()
        return []

    def flush(self) -> list[tuple[object, float]]:
        """Fix the offset with what has been seen and release the held packets."""
        if self.offset is None:
            if not self._held:
                return []
            self.offset = self._best if self._best != float("inf") else 0.0
            log.debug("stream %s on the recording clock: offset %.3f s (%d items from %.3f s)", self.name,
                      self.offset, len(self._held), self._first_arrival)
        held, self._held = self._held, []
        return self._place(held)

    def behind(self, cut: float, now: float, idle: float) -> bool:
        """Whether media from before ``cut`` may still come: the latest item placed is before it and the stream
        is flowing (an item arrived within ``idle`` of ``now``). A stream still in its window is not waited for
        (what it holds is released at ``flush``), nor one that never had an item."""
        return (self.last is not None and self.last < cut and self.arrived is not None
                and now - self.arrived < idle)

    def _place(self, items: list) -> list[tuple[object, float]]:
        out = []
        for item, media_time in items:
            t = media_time + self.offset
            self.last = t if self.last is None else max(self.last, t)
            if self.cut is None or t < self.cut:
                out.append((item, t))
        return out
