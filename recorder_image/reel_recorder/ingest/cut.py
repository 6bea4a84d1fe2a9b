"""A run ends at one instant for every stream (a stop, a pause): ``cut_streams``.

The moment the recorder decides to end a run is the run's end on the recording clock, for every stream of every
participant. Nothing placed at or after it is recorded (clock.py ``StreamAligner.cut``), and what a stream had
from before it but has not delivered yet is waited for: a sender's video often runs late against its audio (an
encoder behind on a busy machine, a pacer holding video packets), and without the wait the recording's video
ended up to a few tenths of a second before its audio. The wait is short and bounded: until every flowing stream
has placed an item at or after the cut (the next frame is past it), at most ``CUT_WAIT``; a stream that is not
flowing (nothing arrived for ``IDLE``: a muted or stalled sender, a lost room) is not waited for.

Called on the event loop by the ingests' ``close`` (ingest/forward.py, ingest/webrtc.py), before they stop
anything: the forwarders and subscriptions still deliver during the wait.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from ..clock import RecordingClock, StreamAligner

log = logging.getLogger(__name__)

CUT_WAIT = 1.0  # s: the most a run's end waits for a stream running late
IDLE = 0.5  # s: a stream with nothing arrived for this long is not flowing: not waited for
POLL = 0.01  # s


async def cut_streams(aligners: Iterable[StreamAligner], clock: RecordingClock, *, wait: float = CUT_WAIT,
                      idle: float = IDLE) -> float:
    """Cut every stream at now (the recording clock); return once each has delivered what it had from before
    (or ``wait`` has passed). Returns the cut."""
    aligners = list(aligners)
    cut = clock.now()
    for a in aligners:
        a.cut = cut
    waited_for: list[str] = []
    while True:
        now = clock.now()
        late = [a for a in aligners if a.behind(cut, now, idle)]
        waited_for = waited_for or [a.name for a in late]
        if not late or now - cut >= wait:
            break
        await asyncio.sleep(POLL)
    waited = clock.now() - cut
    if late:
        log.warning("run cut at %.3f s: %s still behind after %.1f s (what comes later is not recorded)", cut,
                    ", ".join(a.name for a in late), waited)
    elif waited >= 0.05:
        log.info("run cut at %.3f s: waited %.2f s for %s", cut, waited, ", ".join(waited_for))
    return cut
