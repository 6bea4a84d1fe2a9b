"""The media watchdog: notices a recorded participant whose media stopped coming while Janus still lists them.

Pure (no I/O, no clock of its own): ``Outputs.watch`` (outputs.py) feeds it each recorded participant's packet
counts (ingest ``packets_of``) about once a second and carries out what it answers:

- a stream that delivered nothing for ``STALL_SECONDS`` (10 s) → ``REFORWARD``: their forwarding is set up
  again (their run ends and a new one starts, so their playlist continues after a discontinuity) with a
  keyframe request; once per participant and stall, status counts it (``stalls``);
- still nothing for another ``STALL_SECONDS`` after that, from a participant none of whose streams ever
  delivered a packet → ``SKIP`` (reason NoMedia: they are listed, not recorded; the others go on);
- a participant who delivered before and stalls again after the second forwarding is left as is (muted
  cameras and DTX audio go quiet too); the stall stays counted in status.

A stream that has not delivered a packet yet while another of the participant's does is not judged: a camera off
from the start (a video track that sends nothing) is common, and forwarding it again would only cut the
participant's recording in two runs. It is judged once it has delivered (then a stall is a stall), and when none of
the participant's streams delivers.

A participant's run starting afresh (a rejoin, a resume after a pause) starts over (``forget``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

STALL_SECONDS = 10.0
REFORWARD = "reforward"
SKIP = "skip"


@dataclass
class _Watch:
    counts: dict[str, int]
    since: float  # when any count last moved (or the watch began)
    ever: bool = False  # a packet came at some point
    started: set[str] = field(default_factory=set)  # kinds that delivered a packet at some point
    reforwarded: bool = False
    stalled: bool = False  # the current stall has been acted upon


@dataclass
class MediaWatchdog:
    stall_seconds: float = STALL_SECONDS
    _watches: dict[object, _Watch] = field(default_factory=dict)

    def observe(self, pub_id: object, counts: dict[str, int], now: float) -> str | None:
        """``counts``: packets so far per stream kind of ``pub_id`` (monotonic while they are forwarded, from 0
        after a reforward). Returns REFORWARD, SKIP or None."""
        w = self._watches.get(pub_id)
        if w is None:
            self._watches[pub_id] = _Watch(dict(counts), now, ever=any(counts.values()),
                                           started={kind for kind, n in counts.items() if n})
            return None
        moved = {kind for kind, n in counts.items() if n != w.counts.get(kind, 0)}
        w.started |= {kind for kind, n in counts.items() if n}
        # nothing moved, or a stream that had delivered did not move since ``since`` (one that never delivered,
        # while another moves, is not judged: module docstring)
        stuck = not moved or any(kind not in moved for kind in counts if kind in w.started)
        w.counts = dict(counts)
        if any(counts.values()):
            w.ever = True
        if not stuck:
            w.since, w.stalled = now, False
            return None
        # one stream moving while another does not: the quiet one is judged from when all last moved
        if now - w.since < self.stall_seconds or w.stalled:
            return None
        if not w.reforwarded:
            w.reforwarded, w.since = True, now
            return REFORWARD
        w.stalled = True
        return None if w.ever else SKIP

    def reforwarded(self, pub_id: object, counts: dict[str, int], now: float) -> None:
        """After REFORWARD: the new forwarders count from 0."""
        w = self._watches.get(pub_id)
        if w is not None:
            w.counts, w.since = dict(counts), now

    def forget(self, pub_id: object) -> None:
        self._watches.pop(pub_id, None)
