"""The composite recording of one session (mode composite or both): the engine, its HLS writer, its catalog entry.

The Recorder owns one ``CompositeRecording`` and tells it who is recorded:

- ``sink(pub, streams, writer)``: the MediaSink to give the ingest for ``pub``: a ``TeeSink`` that feeds the
  participant's own writer first (mode both; None in mode composite) and then the composite. The first call for a
  publisher adds them to the picture and the mix (joined now); a later one (their streams changed) only notes a
  camera switched off;
- ``leave(pub_id)``: they left, or the recording paused (their tile goes, the layout reflows);
- ``pause()`` / ``resume()``: the composite's run ends at the pause (a discontinuity in its playlist); the next
  media after ``resume`` starts the next one;
- ``close(interrupted=...)``: after the ingest has stopped: the engine composes what is due, flushes its
  encoders, and the writer closes its last segment (and its MP4, unless this recorder is interrupted: the one
  that ends the recording builds it from the stored segments, as for the participants).

The engine (engine.py) composes, mixes and encodes on its own thread, ``reel-composite``; its packets go to the
writer on that thread (the writer has its own lock); a run's end pauses the writer there too. The ingest threads
feed the engine through the tee and never wait for it. ``_members`` (publisher ids in the composite) is only
touched by the Recorder, on its event loop.

A failure of the composite (``error``) ends a composite-only recording (the Recorder raises it); in mode both
the participants' recordings go on and status.composite.error says why the composite stopped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from ..clock import RecordingClock
from ..layout import COMPOSITE_FOLDER
from ..manifest import COMPOSITE_STAT_KEYS
from ..output.catalog import Catalog, CatalogEntry
from ..output.formats import format_of
from ..output.writer import ParticipantWriter, SpoolGate
from ..room.presence import PublishedStream, Publisher
from ..session import Recording
from .config import CompositeConfig
from .encoder import AacPassthrough
from .engine import CompositeEngine
from .tee import ALL_KINDS, TeeSink

log = logging.getLogger(__name__)

#: Automatic bitrate (videoBitrate 0): bits per pixel per frame, and a floor.
AUTO_BITS_PER_PIXEL = 0.1
MIN_AUTO_BITRATE = 150_000


def config_for(recording: Recording) -> CompositeConfig:
    """The engine's settings from spec.recording (its composite block, segment length and stream types)."""
    c = recording.composite
    bitrate = c.video_bitrate * 1000 or max(MIN_AUTO_BITRATE, round(AUTO_BITS_PER_PIXEL * c.width * c.height * c.fps))
    return CompositeConfig(width=c.width, height=c.height, fps=c.fps, video_bitrate=bitrate, layout=c.layout,
                           background=c.background, show_names=c.show_names,
                           segment_seconds=float(recording.segment_seconds),
                           video=recording.stream_types != "audio", audio=recording.stream_types != "video")


class CompositeRecording:
    def __init__(self, recording: Recording, *, clock: RecordingClock, catalog: Catalog, entry: CatalogEntry,
                 spool: Path, first_index: int = 0, mp4: bool = False, spool_gate: SpoolGate | None = None,
                 engine_factory: Callable[..., CompositeEngine] = CompositeEngine):
        self.config = config_for(recording)
        self.clock, self.catalog, self.entry = clock, catalog, entry
        self.engine = engine_factory(self.config, clock, self._on_packet, on_run_end=self._run_ended)
        self.writer = ParticipantWriter(
            COMPOSITE_FOLDER, spool, segment_seconds=recording.segment_seconds, first_index=first_index,
            on_segment=lambda info: catalog.segment_closed(entry, info),
            expect_video=self.config.video, expect_audio=self.config.audio,
            mp4=mp4, on_mp4=lambda info: catalog.mp4_closed(entry, info), spool_gate=spool_gate,
            audio_transcoder=lambda: AacPassthrough(self.engine.audio_template),
            segment_format=format_of(recording))  # its audio is AAC whatever audioCodec says: it is mixed
        self._members: dict[object, bool] = {}  # publisher id -> has video
        self.closed = False

    # -- the Recorder (event loop) ---------------------------------------------------------------------------------
    def start(self) -> None:
        self.engine.start()

    def sink(self, pub: Publisher, streams: list[PublishedStream], writer: ParticipantWriter | None,
             own: frozenset[str] = ALL_KINDS) -> TeeSink:
        """``pub``'s media into the composite and, for the kinds in ``own``, into ``writer`` (mode both)."""
        video = next((s for s in streams if s.kind == "video"), None)
        if pub.id not in self._members:
            tap = self.engine.add(pub.id, pub.display, self.clock.now(),
                                  video_codec=(video.codec or "h264").lower() if video else "h264")
        else:
            tap = self.engine.tap(pub.id)
            if self._members[pub.id] and video is None:
                self.engine.video_ended(pub.id)  # camera off: their name tile
        self._members[pub.id] = video is not None
        return TeeSink(writer, tap, own)

    def leave(self, pub_id: object) -> None:
        if self._members.pop(pub_id, None) is not None:
            self.engine.remove(pub_id)

    def pause(self) -> None:
        self.engine.pause()
        for pub_id in list(self._members):
            self.leave(pub_id)

    def resume(self) -> None:
        self.engine.resume()

    def close(self, *, interrupted: bool, timeout: float = 15.0) -> None:
        """Blocking (a worker thread): the engine's last pictures and flush, then the writer's last segment."""
        if self.closed:
            return
        self.closed = True
        self.engine.close(timeout=timeout)
        self.writer.close(hand_over_mp4=not interrupted)
        if interrupted:
            self.catalog.run_ended(self.entry)
        else:
            self.catalog.participant_ended(self.entry)

    @property
    def error(self) -> BaseException | None:
        return self.engine.error

    def status(self) -> dict:
        """status.composite; the same counts go into the manifest (``stats``)."""
        error = self.engine.error
        return {"playlist": self.entry.record.playlist, **self.stats(),
                **({"error": f"{type(error).__name__}: {error}"} if error is not None else {})}

    def stats(self) -> dict:
        """The engine's counts that status.composite and the manifest carry (manifest.COMPOSITE_STAT_KEYS)."""
        counts = self.engine.stats()
        return {key: counts.get(key, 0) for key in COMPOSITE_STAT_KEYS}

    # -- the engine's thread ---------------------------------------------------------------------------------------
    def _on_packet(self, kind: str, packet, t: float) -> None:
        if kind == "video":
            self.writer.video(packet, t)
        else:
            self.writer.audio(packet, t)

    def _run_ended(self) -> None:
        """The composite's run ended (everyone left, a pause): its segment closes; the next run follows a
        discontinuity."""
        if not self.writer.closed:
            self.writer.pause()
            self.catalog.run_ended(self.entry)
