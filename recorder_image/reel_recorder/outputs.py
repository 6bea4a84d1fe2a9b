"""Who is recorded into what: each recorded publisher's media to their own writer, to the composite, or both.

``spec.recording.mode``: individual (each participant's HLS folder), composite (the whole meeting in one
folder, composite/recording.py; participants are followed for the manifest but have no folder), both.
``Outputs`` turns presence changes into runs (participants.py) and ingest sinks, and ends them: when someone
leaves, at a pause, at the stop. The Recorder decides *when* (phases, pausing, stop reasons); this decides
*where the media goes*.

Threads: everything here runs on the Recorder's event loop; blocking work (a writer closing its segment, the
composite's last pictures) goes to worker threads through ``asyncio.to_thread``. The writers and the composite
engine have their own locks against the media threads that feed them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from reel_api.vocabulary import SkipReason

from . import watchdog
from .clock import RecordingClock
from .errors import CODEC_UNSUPPORTED, INTERNAL, RecorderError
from .ingest.forward import ForwardFailed
from .manifest import ParticipantRecord
from .output.catalog import Catalog, CatalogEntry
from .output.formats import FMP4, format_of
from .output.writer import ParticipantWriter, SpoolGate
from .participants import Participants
from .room.presence import Down, Presence, PublishedStream, Publisher, Up, select_streams
from .session import Recording

if TYPE_CHECKING:
    from .composite.recording import CompositeRecording

log = logging.getLogger(__name__)
WATCH_EVERY = 1.0  # seconds between the media watchdog's looks


#: What each kind of recording can take: a participant's own HLS copies H.264 as it comes (MPEG-TS cannot carry
#: VP8); the composite decodes, so VP8 is fine there. Audio is Opus (WebRTC's).
HLS_CODECS = {"video": {"h264"}, "audio": {"opus"}}
COMPOSITE_CODECS = {"video": {"h264", "vp8"}, "audio": {"opus"}}
#: fMP4 segments carry VP9 and AV1 too, copied (MPEG-TS cannot)
FMP4_CODECS = {"video": {"h264", "vp9", "av1"}, "audio": {"opus"}}


@dataclass(frozen=True)
class StreamPlan:
    """What becomes of a publisher's selected streams (``plan_streams``)."""

    forward: list[PublishedStream]  # what the ingest takes
    own: frozenset[str]  # the kinds that go to their own writer (HLS folder)
    skipped: list[dict]  # status/manifest entries: {"kind", "codec", "reason", "message"}


def plan_streams(streams: list[PublishedStream], mode: str, segment_format: str | None = None) -> StreamPlan:
    """Which of ``streams`` are recorded where in ``mode`` (individual, composite, both) and ``segment_format``
    (ts, fmp4: VP9 and AV1 video too); the rest is skipped with a message that says what to do. A stream the composite
    takes but their own folder cannot (VP8 in mode both) is recorded in the composite only, and listed as skipped
    for their folder."""
    own_codecs = FMP4_CODECS if segment_format == FMP4 else HLS_CODECS
    takes = own_codecs if mode == "individual" else COMPOSITE_CODECS
    forward, skipped = [], []
    for s in streams:
        codec = (s.codec or "").lower()
        if codec in takes[s.kind]:
            forward.append(s)
        elif mode == "individual" and codec in FMP4_CODECS[s.kind]:
            skipped.append(_skipped(s, SkipReason.CODEC_UNSUPPORTED, f"{s.kind} is {s.codec}: MPEG-TS segments "
                                    f"cannot carry {s.codec}: record with spec.recording.segmentFormat: fmp4, or "
                                    "create the room with videocodec=h264"))
        else:
            skipped.append(_skipped(s, SkipReason.CODEC_UNSUPPORTED, f"{s.kind} is {s.codec}: Reel records "
                                    f"{'H.264' if s.kind == 'video' else 'Opus'} {s.kind}" + (
                " (VP8 too in mode composite or both, which re-encode)" if s.kind == "video" else "") +
                ": create the room with videocodec=h264" + (", or record it with spec.recording.mode: composite"
                                                             if mode == "individual" and codec == "vp8" else "")))
    if mode == "composite":
        return StreamPlan(forward, frozenset(), skipped)
    own = frozenset(s.kind for s in forward if (s.codec or "").lower() in own_codecs[s.kind])
    for s in forward:
        if s.kind not in own:
            skipped.append(_skipped(s, SkipReason.CODEC_UNSUPPORTED, f"{s.kind} is {s.codec}: in the composite "
                                    f"only: their own folder copies H.264 (MPEG-TS cannot carry {s.codec}); create "
                                    "the room with videocodec=h264"))
    return StreamPlan(forward, own, skipped)


def _skipped(s: PublishedStream, reason: str, message: str) -> dict:
    """A status/manifest entry for a stream not recorded (status.participants[].skipped[])."""
    return {"kind": s.kind, "codec": s.codec, "reason": reason, "message": message}


class Ingest(Protocol):
    """Gets each recorded publisher's media into their sink (ingest/forward.py ForwardIngest, ingest/webrtc.py
    WebRtcIngest: ``spec.recording.ingest``)."""

    async def update(self, pub: Publisher, streams: list[PublishedStream], sink, counts=None) -> None: ...
    async def remove(self, pub_id) -> None: ...
    async def close(self) -> None: ...
    def failures(self) -> list[BaseException]: ...
    def packets_of(self, pub_id) -> dict[str, int]: ...
    def take_failed(self) -> list[tuple[object, ForwardFailed]]: ...


class Outputs:
    def __init__(self, recording: Recording, *, catalog: Catalog, spool: Path, clock: RecordingClock,
                 spool_gate: SpoolGate | None = None, resumed: bool = False):
        """``resumed``: this recorder continues an earlier one's recording; its MP4s are built from the stored
        segments at the end (``Participants.rebuild_mp4s``), not written while recording."""
        self.rec, self.catalog, self.spool, self.clock = recording, catalog, spool, clock
        self.spool_gate, self.resumed = spool_gate, resumed
        self.participants = Participants(catalog, self._make_writer, media=recording.mode != "composite")
        self.composite: CompositeRecording | None = None
        self.composite_from: tuple[ParticipantRecord, int] | None = None  # an earlier run's composite (resume)
        self.watchdog = watchdog.MediaWatchdog()
        self._publishers: dict[object, Publisher] = {}  # recorded publishers as last seen (the watchdog's)
        self._last_watch = 0.0

    # -- what is recorded ------------------------------------------------------------------------------------
    def streams_of(self, pub: Publisher) -> list[PublishedStream]:
        return select_streams(pub, stream_types=self.rec.stream_types, subscribe=list(self.rec.subscribe),
                              unsubscribe=list(self.rec.unsubscribe))

    def present(self, presence: Presence, *, paused: bool) -> bool:
        """Someone we would record is publishing (being recorded, or not while paused)."""
        if self.participants.any_active():
            return True
        return paused and any(self.streams_of(p) for p in presence.publishers.values())

    def start(self) -> None:
        """Once the room is joined: the composite (mode composite or both) starts its clockwork."""
        if self.rec.mode != "individual":
            self.composite = self._make_composite()

    async def apply(self, changes, ingest: Ingest) -> bool:
        """Presence changes → runs started, changed or ended; True when who is recorded (or skipped) changed.
        What cannot be recorded of someone is skipped (``plan_streams``, Janus refusing their forwarding),
        never fatal: the others go on."""
        changed = False
        for change in changes:
            if isinstance(change, Up):
                pub = change.publisher
                plan = plan_streams(self.streams_of(pub), self.rec.mode, self.rec.segment_format)
                if plan.skipped or self.participants.is_known(pub.id):
                    changed |= self.participants.skip(pub, plan.skipped)
                    for item in plan.skipped:
                        log.warning("participant %r (%s): %s not recorded: %s", pub.display, pub.id, item["kind"],
                                    item["message"])
                if plan.forward:
                    await self._start(pub, plan, ingest)
                    changed = True
                elif self.participants.is_recorded(pub.id):
                    await self.leave(pub.id, ingest)
                    changed = True
            elif isinstance(change, Down) and self.participants.is_recorded(change.id):
                await self.leave(change.id, ingest)
                changed = True
        return changed

    async def _start(self, pub: Publisher, plan: StreamPlan, ingest: Ingest) -> bool:
        """Start (or change) ``pub``'s run; False when Janus would not forward them (skipped, or gone). A run
        going on keeps the streams that are forwarded when Janus does not forward a new one."""
        was_recorded = self.participants.is_recorded(pub.id)
        part = self.participants.start_run(pub, [s for s in plan.forward if s.kind in plan.own])
        sink = part.writer if self.composite is None else self.composite.sink(pub, plan.forward, part.writer,
                                                                              plan.own)
        try:
            await ingest.update(pub, plan.forward, sink, counts=part.media)
        except ForwardFailed as err:
            if not was_recorded:
                await self.leave(pub.id, ingest)
                self.participants.drop_run(pub.id)
            if err.gone:
                return False
            log.warning("participant %r (%s) not recorded: %s", pub.display, pub.id, err.message)
            going = ingest.packets_of(pub.id) if was_recorded else {}
            self.participants.skip(pub, plan.skipped + [
                _skipped(s, err.reason, err.message) for s in plan.forward if s.kind not in going])
            return False
        self._publishers[pub.id] = pub
        return True

    async def leave(self, pub_id, ingest: Ingest, *, forget: bool = True) -> None:
        if self.composite is not None:  # the layout reflows now, not once their ingest has stopped (~0.75 s later)
            self.composite.leave(pub_id)
        await ingest.remove(pub_id)
        if self.participants.is_recorded(pub_id):
            await self.participants.end_run(pub_id)
        if forget:
            self.watchdog.forget(pub_id)
            self._publishers.pop(pub_id, None)

    async def watch(self, ingest: Ingest) -> bool:
        """The media watchdog (watchdog.py), about once a second: a recorded participant whose media stopped
        is forwarded again, once; one whose media never came is skipped (NoMedia). True when status changed."""
        now = time.monotonic()
        if now - self._last_watch < WATCH_EVERY:
            return False
        self._last_watch = now
        changed = False
        for pub_id, err in ingest.take_failed():  # the WebRTC ingest: a connection that did not come up
            pub = self._publishers.get(pub_id)
            if pub is None or not self.participants.is_recorded(pub_id):
                continue
            await self.leave(pub_id, ingest)
            plan = plan_streams(self.streams_of(pub), self.rec.mode)
            self.participants.skip(pub, plan.skipped + [_skipped(s, err.reason, err.message) for s in plan.forward])
            changed = True
        for pub_id in self.participants.recorded_ids():
            pub = self._publishers.get(pub_id)
            if pub is None:
                continue
            action = self.watchdog.observe(pub_id, ingest.packets_of(pub_id), now)
            if action is None:
                continue
            plan = plan_streams(self.streams_of(pub), self.rec.mode)
            await self.leave(pub_id, ingest, forget=False)
            changed = True
            if action == watchdog.SKIP:
                log.warning("participant %r (%s): no media came, also after forwarding it again: skipped",
                            pub.display, pub_id)
                self.participants.skip(pub, plan.skipped + [
                    _skipped(s, SkipReason.NO_MEDIA, f"no {s.kind} packet came from Janus, also after forwarding "
                             "it again (media is taken from Janus's address only: the room server's, or "
                             "REEL_JANUS_MEDIA_ADDRESS when Janus sends from another one)")
                    for s in plan.forward])
                self._publishers.pop(pub_id, None)
                continue
            log.warning("participant %r (%s): no media for %.0f s; forwarding it again", pub.display, pub_id,
                        self.watchdog.stall_seconds)
            self.participants.stalled(pub_id)
            if await self._start(pub, plan, ingest):
                self.watchdog.reforwarded(pub_id, ingest.packets_of(pub_id), time.monotonic())
        return changed

    def unrecordable(self) -> RecorderError | None:
        """Nobody was recorded, and someone could not be for their codec: the session's failure (at NoUsers)."""
        if self.participants.ever_recorded():
            return None
        for part in self.participants:
            for item in part.record.skipped:
                if item["reason"] == SkipReason.CODEC_UNSUPPORTED:
                    return RecorderError(CODEC_UNSUPPORTED, f"nobody could be recorded: participant "
                                         f"{part.record.display!r}'s {item['message']}")
        return None

    async def pause(self, ingest: Ingest) -> None:
        """Every recorded participant's run ends at the same instant, as if they had left."""
        if self.composite is not None:  # its run ends now, not once the ingest has stopped (~0.75 s later)
            self.composite.pause()
        await ingest.close()
        for pub_id in self.participants.recorded_ids():
            await self.participants.end_run(pub_id)
            self.watchdog.forget(pub_id)

    def resume(self) -> None:
        if self.composite is not None:
            self.composite.resume()

    async def close(self, ingest: Ingest | None, *, interrupted: bool) -> None:
        """The stop: the ingest first (nothing more comes in), then the composite, then every writer."""
        try:
            if ingest is not None:
                await ingest.close()
            if self.composite is not None:
                await asyncio.to_thread(self.composite.close, interrupted=interrupted)
                self.catalog.manifest.composite_stats = self.composite.stats()
        finally:
            await self.participants.finish(interrupted=interrupted)

    def raise_failures(self) -> None:
        """A writer's failure ends the recording; so does the composite's when it is all that is recorded (mode
        both: the participants' recordings go on, status.composite.error says why the composite stopped)."""
        if self.participants.errors:
            raise self.participants.errors[0]
        if self.composite is not None and self.composite.error is not None and not self.participants.media:
            raise RecorderError(INTERNAL, f"the composite failed: {self.composite.error!r}")

    def rebuild_mp4s(self, read_segment) -> None:
        """A resumed recording's MP4s, from the stored segments (blocking: a worker thread)."""
        self.participants.rebuild_mp4s(self.spool, read_segment, (self.composite.entry,) if self.composite else ())

    # -- status ----------------------------------------------------------------------------------------------
    def status(self) -> dict:
        participants = self.participants.status()
        return {
            "participants": participants,
            "activeParticipants": self.participants.active_count(),
            "playlists": [p["playlist"] for p in participants if p["playlist"]] + (
                [self.composite.entry.record.playlist] if self.composite else []),
            **({"composite": self.composite.status()} if self.composite else {}),
        }

    # -- makers ----------------------------------------------------------------------------------------------
    def _make_composite(self) -> CompositeRecording:
        """The composite: a new folder, or the one an earlier run left (resume)."""
        from .composite.recording import CompositeRecording  # numpy and the encoders only when asked for

        if self.composite_from is not None:
            record, first_index = self.composite_from
            entry = self.catalog.restore(record)
        else:
            entry, first_index = self.catalog.add_composite(), 0
        composite = CompositeRecording(self.rec, clock=self.clock, catalog=self.catalog, entry=entry,
                                       spool=self.spool, first_index=first_index, spool_gate=self.spool_gate,
                                       mp4="mp4" in self.rec.outputs and not self.resumed)
        composite.start()
        return composite

    def _make_writer(self, folder: str, streams: list[PublishedStream], entry: CatalogEntry,
                     first_index: int) -> ParticipantWriter | None:
        if not self.participants.media:
            return None  # mode composite: their media goes into the composite only
        return ParticipantWriter(folder, self.spool, segment_seconds=self.rec.segment_seconds,
                                 first_index=first_index,
                                 on_segment=lambda info: self.catalog.segment_closed(entry, info),
                                 expect_audio=any(s.kind == "audio" for s in streams),
                                 expect_video=any(s.kind == "video" for s in streams),
                                 mp4="mp4" in self.rec.outputs and not self.resumed,  # resumed: rebuild_mp4s
                                 on_mp4=lambda info: self.catalog.mp4_closed(entry, info),
                                 spool_gate=self.spool_gate, segment_format=format_of(self.rec),
                                 video_codec=next((s.codec.lower() for s in streams if s.kind == "video"), "h264"))

