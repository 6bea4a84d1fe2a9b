"""The composite's sinks: ``ParticipantTap`` (a participant's media into the engine) and ``TeeSink`` (one
participant's media to two sinks: their own writer first, then the composite).

The ingest (ingest/forward.py) feeds one ``MediaSink`` per participant and sets ``request_keyframe`` on it
once the forwarder is known; ``TeeSink`` passes both on. The composite never gets in the way of the
participant's own recording: it is called after the writer, on the same ingest thread, and an exception
from it is logged (once per kind) and counted, never raised into the ingest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import av

log = logging.getLogger(__name__)


class ParticipantTap:
    """The composite's ``MediaSink`` for one participant (``CompositeEngine.add`` makes it; a ``TeeSink``
    or the ingest feeds it, on the participant's ingest threads)."""

    def __init__(self, engine, pid):
        self.engine, self.pid = engine, pid
        self.request_keyframe: Callable[[], None] = lambda: None  # set by the ingest (through the tee)

    def video(self, packet: av.Packet, t: float) -> None:
        self.engine.video(self.pid, packet, t)

    def audio(self, packet: av.Packet, t: float) -> None:
        self.engine.audio(self.pid, packet, t)

    def ask_keyframe(self) -> None:
        """The compositor needs a keyframe (it starts decoding, or a picture was damaged)."""
        self.request_keyframe()


ALL_KINDS = frozenset({"audio", "video"})


class TeeSink:
    def __init__(self, primary, composite, own: frozenset[str] = ALL_KINDS):
        """``own``: the kinds that go to ``primary`` too (mode both, VP8 video: the composite only)."""
        self.primary = primary  # the ParticipantWriter, or None in a composite-only recording
        self.composite = composite  # a ParticipantTap (engine.py)
        self.own = own
        self.errors = 0
        self._logged: set[str] = set()

    @property
    def request_keyframe(self) -> Callable[[], None]:
        target = self.primary if self.primary is not None and "video" in self.own else self.composite
        return target.request_keyframe

    @request_keyframe.setter
    def request_keyframe(self, fn: Callable[[], None]) -> None:
        if self.primary is not None and "video" in self.own:
            self.primary.request_keyframe = fn
        self.composite.request_keyframe = fn

    def video(self, packet: av.Packet, t: float) -> None:
        if self.primary is not None and "video" in self.own:
            self.primary.video(packet, t)
        self._composite("video", packet, t)

    def audio(self, packet: av.Packet, t: float) -> None:
        if self.primary is not None and "audio" in self.own:
            self.primary.audio(packet, t)
        self._composite("audio", packet, t)

    def _composite(self, kind: str, packet: av.Packet, t: float) -> None:
        try:
            getattr(self.composite, kind)(packet, t)
        except Exception:
            self.errors += 1
            if kind not in self._logged:
                self._logged.add(kind)
                log.exception("composite: %s of a participant failed; the participant's own recording goes on", kind)
