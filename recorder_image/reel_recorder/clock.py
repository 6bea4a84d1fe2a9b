"""One clock for the whole recording, and per-stream alignment onto it.

Janus's RTP forwarders carry no RTCP sender reports, so the RTP timestamps of a participant's audio and
video streams are unrelated numbers. Every stream is therefore placed on the recording's wall clock
(``time.monotonic()`` since the recorder started) by the time its packets arrive. The first packets a
demuxer returns may have waited in its probe buffer, so a single arrival time would be late; instead the
aligner watches a short window of packets and keeps the smallest ``arrival - media_time``: the packet that
waited least. Afterwards the offset is fixed, so timestamps stay exactly as the sender spaced them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


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
    """

    window: float = 0.5
    min_packets: int = 8
    offset: float | None = None
    _first_arrival: float | None = None
    _held: list = field(default_factory=list)
    _best: float = float("inf")

    def push(self, item, media_time: float, arrival: float, *, measure: bool = True) -> list[tuple[object, float]]:
        """``measure=False``: place the item, but its media time is not to be trusted for the offset."""
        if self.offset is not None:
            return [(item, media_time + self.offset)]
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
        held, self._held = self._held, []
        return [(item, t + self.offset) for item, t in held]
