"""The recording of one session: room → ingest → per-participant HLS → uploader, with progress beside it.

``Recorder.run`` joins the room, follows presence, starts and stops the ingest of each recorded
publisher, and ends for one of the stop reasons: Requested (the stop event, e.g. SIGTERM), NoUsers (no
recorded publisher for maxIdleSeconds), MaxDuration, or Error (a RecorderError with its own reason).

Pausing (``spec.paused``, read through a PauseControl) stops the ingest of everyone, as if they had left,
while presence is still followed; resuming starts it again for whoever is publishing then, so each
playlist continues after an ``#EXT-X-DISCONTINUITY``. Paused time counts toward maxDurationSeconds, and an
empty room still ends the recording after maxIdleSeconds.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

from . import errors
from .clock import RecordingClock
from .control import PauseControl
from .errors import RecorderError
from .ids import new_recording_id
from .ingest.forward import ForwardIngest
from .layout import participant_folder, render_prefix
from .manifest import ManifestData, ParticipantRecord, SegmentRecord
from .output.hls import ParticipantHls, SegmentInfo
from .output.mp4 import Mp4Info
from .progress import ProgressSink, now_iso
from .room.janus import JanusRoom
from .room.presence import Down, Presence, Publisher, Up, select_streams
from .session import View
from .storage import Uploader

log = logging.getLogger(__name__)

REQUESTED, NO_USERS, MAX_DURATION, ERROR = "Requested", "NoUsers", "MaxDuration", "Error"
TICK = 0.25
PROGRESS_EVERY = 5.0


@dataclass(frozen=True)
class RoomCredentials:
    pin: str | None = None
    secret: str | None = None
    admin_key: str | None = None
    token: str | None = None


@dataclass
class Outcome:
    reason: str  # Requested | NoUsers | MaxDuration | Error
    message: str = ""
    error_reason: str | None = None  # the RecorderError reason when reason == Error


class _Participant:
    def __init__(self, record: ParticipantRecord, writer: ParticipantHls):
        self.record = record
        self.writer = writer
        self.active_id: object | None = None


def local_address_towards(host: str, port: int) -> str:
    """The address of ours that the kernel would use to reach host (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((host, port))
        return s.getsockname()[0]


class Recorder:
    def __init__(self, session: View, *, credentials: RoomCredentials, uploader: Uploader,
                 spool: Path, progress: ProgressSink, media_address: str | None = None,
                 janus_media_address: str | None = None, control: PauseControl | None = None):
        self.session = session
        self.spec = session.spec
        self.credentials = credentials
        self.uploader = uploader
        self.spool = spool
        self.progress = progress
        self.media_address = media_address
        self.janus_media_address = janus_media_address
        self.clock = RecordingClock()
        self.recording_id = new_recording_id()
        started = datetime.now(UTC)
        self.prefix = render_prefix(self.spec.storage.prefix if self.spec.storage else None,
                                    room=self.spec.room.id, recording_id=self.recording_id, started=started,
                                    session=session.metadata.name, namespace=session.metadata.namespace or "")
        self.manifest = ManifestData(
            session={"name": session.metadata.name, "namespace": session.metadata.namespace},
            tag=self.spec.tag, room={"server": self.spec.room.server, "id": self.spec.room.id},
            recording_id=self.recording_id, prefix=self.prefix, started_at=now_iso())
        self.manifest_key = self.prefix + "manifest.json"
        self.phase = "Starting"
        self.control = control or PauseControl(bool(self.spec.paused))
        self.paused = False
        self._participants: dict[str, _Participant] = {}  # by participant key (display name)
        self._by_id: dict[object, str] = {}
        self._segment_errors: list[BaseException] = []

    # -- status --------------------------------------------------------------------------------------------
    def status(self) -> dict:
        participants = []
        for p in self._participants.values():
            run = p.record.runs[-1] if p.record.runs else {}
            participants.append({"id": p.record.ids[-1], "display": p.record.display, "joinedAt": run.get("joinedAt"),
                                 "leftAt": run.get("leftAt"), "playlist": p.record.playlist})
        return {
            "phase": self.phase,
            "recordingId": self.recording_id,
            "startedAt": self.manifest.started_at,
            "stoppedAt": self.manifest.stopped_at,
            "participants": participants,
            "activeParticipants": sum(1 for p in self._participants.values() if p.active_id is not None),
            "upload": self.uploader.progress().as_status(),
            "playlists": [p.record.playlist for p in self._participants.values()],
            "manifest": self.manifest_key,
        }

    def report(self, event: str) -> None:
        self.progress.report(event, self.status())

    # -- main ----------------------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> Outcome:
        room_spec = self.spec.room
        janus = JanusRoom(room_spec.server, room_spec.id, token=self.credentials.token)
        self.uploader.manifest_updated(self.manifest_key, self.manifest.render)
        self.report("starting")
        ingest: ForwardIngest | None = None
        outcome: Outcome
        try:
            await janus.connect()
            joined = await janus.join(room_spec.display_name, pin=self.credentials.pin)
            url = urlparse(room_spec.server)
            janus_addr = self.janus_media_address or socket.gethostbyname(url.hostname)
            local = self.media_address or local_address_towards(janus_addr, url.port or 8188)
            ingest = ForwardIngest(janus, local_addr=local, janus_addr=janus_addr, clock=self.clock,
                                   secret=self.credentials.secret, admin_key=self.credentials.admin_key)
            presence = Presence(own_id=joined.get("id"))
            self.phase = "Recording"
            if self.control.paused:
                await self._pause(ingest, report=False)
            self.report("joined")
            await self._apply(presence.apply(joined), ingest)
            outcome = await self._loop(janus, presence, ingest, stop)
        except RecorderError as err:
            outcome = Outcome(ERROR, err.message, err.reason)
        except Exception as err:
            log.exception("recording failed")
            outcome = Outcome(ERROR, f"internal error: {err!r}", errors.INTERNAL)
        finally:
            self.phase = "Stopping"
            try:
                if ingest is not None:
                    await ingest.close()
            finally:
                for p in self._participants.values():
                    await asyncio.to_thread(self._end_participant, p, final=True)
                await janus.close()
        self.manifest.stopped_at = now_iso()
        if self.manifest.pauses and self.manifest.pauses[-1]["resumedAt"] is None:
            self.manifest.pauses[-1]["resumedAt"] = self.manifest.stopped_at
        self.manifest.stop_reason = outcome.reason
        self.manifest.message = outcome.message or None
        self.uploader.manifest_updated(self.manifest_key, self.manifest.render)
        return outcome

    async def _loop(self, janus: JanusRoom, presence: Presence, ingest: ForwardIngest,
                    stop: asyncio.Event) -> Outcome:
        rec = self.spec.recording
        started = time.monotonic()
        idle_since: float | None = None if self._present(presence) else started
        last_progress = started
        while True:
            try:
                data = await asyncio.wait_for(janus.events.get(), TICK)
            except TimeoutError:
                data = None
            if data is not None:
                await self._apply(presence.apply(data), ingest)
            if self.control.paused != self.paused:
                if self.control.paused:
                    await self._pause(ingest)
                else:
                    await self._resume(presence, ingest)
            now = time.monotonic()
            if stop.is_set():
                return Outcome(REQUESTED, "stop requested")
            if rec.max_duration_seconds and now - started >= rec.max_duration_seconds:
                return Outcome(MAX_DURATION, f"reached maxDurationSeconds ({rec.max_duration_seconds} s)")
            if self._present(presence):
                idle_since = None
            elif idle_since is None:
                idle_since = now
            elif now - idle_since >= rec.max_idle_seconds:
                return Outcome(NO_USERS, f"no participant published for {rec.max_idle_seconds} s")
            failures = ingest.failures() + self._segment_errors
            if failures:
                err = failures[0]
                if isinstance(err, RecorderError):
                    raise err
                raise RecorderError(errors.INTERNAL, f"media pipeline failed: {err!r}")
            fatal = self.uploader.fatal_error
            if fatal is not None:
                raise RecorderError(errors.STORAGE_FAILED, str(fatal))
            if janus.closed.is_set():
                raise RecorderError(errors.JANUS_ERROR, f"lost the connection to Janus at {janus.url}")
            if now - last_progress >= PROGRESS_EVERY:
                last_progress = now
                self.report("progress")

    def _active(self) -> bool:
        return any(p.active_id is not None for p in self._participants.values())

    def _present(self, presence: Presence) -> bool:
        """Someone we would record is publishing (being recorded, or not while paused)."""
        if self._active():
            return True
        return self.paused and any(self._streams_of(p) for p in presence.publishers.values())

    def _streams_of(self, pub: Publisher):
        rec = self.spec.recording
        return select_streams(pub, stream_types=str(rec.stream_types), subscribe=list(rec.subscribe or []),
                              unsubscribe=list(rec.unsubscribe or []))

    async def _pause(self, ingest: ForwardIngest, *, report: bool = True) -> None:
        """Stop writing media: every recorded participant's ingest ends as if they had left."""
        self.paused = True
        self.phase = "Paused"
        self.manifest.pauses.append({"pausedAt": now_iso(), "resumedAt": None})
        await ingest.close()  # everyone's streams end at the same instant
        for pub_id in list(self._by_id):
            await self._end_run(pub_id)
        log.info("paused")
        if report:
            self.report("paused")

    async def _resume(self, presence: Presence, ingest: ForwardIngest) -> None:
        self.paused = False
        self.phase = "Recording"
        self.manifest.pauses[-1]["resumedAt"] = now_iso()
        log.info("resumed")
        await self._apply([Up(p) for p in list(presence.publishers.values())], ingest)
        self.report("resumed")

    async def _apply(self, changes, ingest: ForwardIngest) -> None:
        changed = False
        for change in changes:
            if isinstance(change, Up):
                if self.paused:
                    continue  # presence is followed; recording starts again on resume
                streams = self._streams_of(change.publisher)
                if streams:
                    part = self._participant_for(change.publisher, streams)
                    await ingest.update(change.publisher, streams, part.writer)
                    changed = True
                elif change.publisher.id in self._by_id:
                    await self._leave(change.publisher.id, ingest)
                    changed = True
            elif isinstance(change, Down) and change.id in self._by_id:
                await self._leave(change.id, ingest)
                changed = True
        if changed:
            self.report("participants")

    def _participant_for(self, pub: Publisher, streams) -> _Participant:
        key = self._by_id.get(pub.id)
        if key is None:
            key = pub.display
            existing = self._participants.get(key)
            if existing is not None and existing.active_id not in (None, pub.id):
                key = f"{pub.display}\x00{pub.id}"  # two people with one name: keep them apart
        part = self._participants.get(key)
        if part is None:
            folder = participant_folder(pub.display, pub.id)
            record = ParticipantRecord(display=pub.display, folder=folder,
                                       playlist=f"{self.prefix}{folder}/index.m3u8")
            writer = ParticipantHls(folder, self.spool, segment_seconds=self.spec.recording.segment_seconds,
                                    on_segment=lambda info: self._segment_closed(record, writer, info),
                                    expect_audio=any(s.kind == "audio" for s in streams),
                                    expect_video=any(s.kind == "video" for s in streams),
                                    key_prefix=f"{self.prefix}{folder}/",
                                    mp4="mp4" in (self.spec.recording.outputs or []),
                                    on_mp4=lambda info: self._mp4_closed(record, info))
            part = _Participant(record, writer)
            self._participants[key] = part
            self.manifest.participants.append(record)
            self.uploader.playlist_updated(record.playlist, writer.playlist.render)
        if part.active_id is None:
            part.active_id = pub.id
            part.record.runs.append({"joinedAt": now_iso(), "leftAt": None})
            if pub.id not in part.record.ids:
                part.record.ids.append(pub.id)
            self._by_id[pub.id] = key
        return part

    async def _leave(self, pub_id, ingest: ForwardIngest) -> None:
        await ingest.remove(pub_id)
        await self._end_run(pub_id)

    async def _end_run(self, pub_id) -> None:
        """The participant's ingest is stopped: close its run (a later one continues after a discontinuity)."""
        part = self._participants[self._by_id.pop(pub_id)]
        await asyncio.to_thread(self._end_participant, part, final=False)

    def _end_participant(self, part: _Participant, *, final: bool) -> None:
        if part.active_id is not None:
            part.active_id = None
            part.record.runs[-1]["leftAt"] = now_iso()
        try:
            if final:
                part.writer.close()
            else:
                part.writer.pause()
        except RecorderError as err:
            self._segment_errors.append(err)
        if final and part.writer.mp4 is not None and part.writer.mp4.error:
            part.record.mp4 = {"error": part.writer.mp4.error}
        self.uploader.playlist_updated(part.record.playlist, part.writer.playlist.render)

    def _mp4_closed(self, record: ParticipantRecord, info: Mp4Info) -> None:
        key = f"{self.prefix}{record.folder}/recording.mp4"
        record.mp4 = {"key": key, "bytes": info.size, "sha256": info.sha256, "duration": round(info.duration, 3)}
        self.uploader.segment_closed(key, info.path, size=info.size, sha256=info.sha256)

    def _segment_closed(self, record: ParticipantRecord, writer: ParticipantHls, info: SegmentInfo) -> None:
        record.segments.append(SegmentRecord(name=info.name, key=info.key, start=info.start, duration=info.duration,
                                             bytes=info.size, sha256=info.sha256,
                                             discontinuity=info.discontinuity))
        self.uploader.segment_closed(info.key, info.path, size=info.size, sha256=info.sha256)
        self.uploader.playlist_updated(record.playlist, writer.playlist.render)
