"""Who is recorded into what: each recorded publisher's media to their own writer, to the composite, or both.

``spec.recording.mode``: individual (each participant's HLS folder), composite (the whole meeting in one
folder, composite/recording.py; participants are followed for the manifest but have no folder), both.
``Outputs`` turns presence changes into runs (participants.py) and ingest sinks, and ends them: when someone
leaves, at a pause, at the stop. The Recorder decides *when* (phases, pausing, stop reasons); this decides
*where the media goes*.

Threads: everything here runs on the Recorder's event loop; blocking work (a writer closing its segment, the
composite's last pictures) goes to worker threads through ``asyncio.to_thread``. The writers and the composite
engine have their own locks against the media reader threads that feed them.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from .clock import RecordingClock
from .errors import INTERNAL, RecorderError
from .manifest import ParticipantRecord
from .output.catalog import Catalog, CatalogEntry
from .output.writer import ParticipantWriter, SpoolGate
from .participants import Participants
from .room.presence import Down, Presence, PublishedStream, Publisher, Up, select_streams
from .session import Recording

if TYPE_CHECKING:
    from .composite.recording import CompositeRecording


class Ingest(Protocol):
    """Gets each recorded publisher's media into their sink (ingest/forward.py ForwardIngest)."""

    async def update(self, pub: Publisher, streams: list[PublishedStream], sink) -> None: ...
    async def remove(self, pub_id) -> None: ...
    async def close(self) -> None: ...
    def failures(self) -> list[BaseException]: ...


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
        """Presence changes → runs started, changed or ended; True when who is recorded changed."""
        changed = False
        for change in changes:
            if isinstance(change, Up):
                streams = self.streams_of(change.publisher)
                if streams:
                    part = self.participants.start_run(change.publisher, streams)
                    sink = part.writer if self.composite is None else self.composite.sink(change.publisher, streams,
                                                                                           part.writer)
                    await ingest.update(change.publisher, streams, sink)
                    changed = True
                elif self.participants.is_recorded(change.publisher.id):
                    await self.leave(change.publisher.id, ingest)
                    changed = True
            elif isinstance(change, Down) and self.participants.is_recorded(change.id):
                await self.leave(change.id, ingest)
                changed = True
        return changed

    async def leave(self, pub_id, ingest: Ingest) -> None:
        if self.composite is not None:  # the layout reflows now, not once their ingest has stopped (~0.75 s later)
            self.composite.leave(pub_id)
        await ingest.remove(pub_id)
        await self.participants.end_run(pub_id)

    async def pause(self, ingest: Ingest) -> None:
        """Every recorded participant's run ends at the same instant, as if they had left."""
        if self.composite is not None:  # its run ends now, not once the ingest has stopped (~0.75 s later)
            self.composite.pause()
        await ingest.close()
        for pub_id in self.participants.recorded_ids():
            await self.participants.end_run(pub_id)

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
                                 spool_gate=self.spool_gate)

