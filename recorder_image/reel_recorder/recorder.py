"""The life of one recording, and the only place its phase changes: room → ingest → HLS → catalog → uploader.

``Recorder.run`` takes the recording through every phase and returns the final status:

- **Starting**: the stores are checked (``Uploader.preflight``), the room is joined;
- **Recording** / **Paused**: presence is followed, the ingest of each recorded publisher is started and
  stopped, until one of the stop reasons: Requested (the stop event, e.g. SIGTERM), NoUsers (no recorded
  publisher for maxIdleSeconds), MaxDuration, or Error (a RecorderError with its own failure reason);
- **Stopping**: every ingest ends at the same instant, every writer closes its last segment;
- **Uploading**: the uploader stores what is left, backfills, writes the final playlists and manifest;
- **Completed**, **BackedUp** or **Failed** (``final_phase``).

The room client, the ingest (built by ``make_ingest`` once the room is joined) and the uploader are passed in, so
the orchestration can run against fakes (tests/unit/test_recorder_lifecycle.py) as well as against Janus.

A lost connection to Janus ends every run as a pause does and is regained with backoff for up to reconnectSeconds
(room/reconnect.py; then JanusLost): once joined again, each playlist continues after an ``#EXT-X-DISCONTINUITY``.

Pausing (``spec.paused``, read through a PauseControl) stops the ingest of everyone, as if they had left,
while presence is still followed; resuming starts it again for whoever is publishing then, so each
playlist continues after an ``#EXT-X-DISCONTINUITY``. Paused time counts toward maxDurationSeconds, and an
empty room still ends the recording after maxIdleSeconds.

The spool (``spool_budget``, storage/spool.py): while recording, the loop measures it once a second; above its
high-water mark the writers drop new media (the oldest unstored data is kept) until uploads bring it below the
low-water mark. Each such stretch is a ``diskFull`` entry of the manifest, and status.spool says what it cost.

Threads: ``run`` and everything it calls run on the event loop; blocking work (store checks, closing writers,
the uploader's close) goes to worker threads through ``asyncio.to_thread``. Media threads (the ingest's feeds and pumps)
feed the writers; the uploader has its own threads (storage/uploader.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from reel_api.vocabulary import ConditionReason, Phase, StopReason

from . import errors
from .clock import RecordingClock
from .control import PauseControl
from .errors import RecorderError
from .ids import new_recording_id
from .layout import manifest_key, render_prefix, sanitize
from .manifest import ManifestData
from .output.catalog import Catalog
from .outputs import Ingest, Outputs
from .progress import ProgressSink, now_iso
from .resume import Previous, ResumeRequest, take_over
from .room.presence import Presence, Up
from .room.reconnect import RoomLink
from .session import Session
from .storage import StoreError, Uploader
from .storage.spool import SpoolBudget, SpoolState, episode_totals

log = logging.getLogger(__name__)

TICK = 0.25
PROGRESS_EVERY = 5.0
SPOOL_EVERY = 1.0  # how often the spool is measured while recording (every TICK when it is nearly full)


class Room(Protocol):
    """The room client the recorder needs (room/janus.py JanusRoom)."""

    url: str
    events: asyncio.Queue
    closed: asyncio.Event
    error: str | None  # why the connection ended (with ``closed``); connect() may be called again after a loss

    async def connect(self) -> None: ...
    async def join(self, display: str, pin: str | None = None) -> dict: ...
    async def close(self) -> None: ...


@dataclass
class Outcome:
    reason: str  # a StopReason, or ConditionReason.INTERRUPTED
    message: str = ""
    error_reason: str | None = None  # the RecorderError reason when reason == Error

    @property
    def interrupted(self) -> bool:
        """This recorder ends, the recording does not: a replacement continues it (resume.py)."""
        return self.reason == ConditionReason.INTERRUPTED


def final_phase(outcome: Outcome, upload_status: str) -> Phase:
    """Failed when recording or storing failed; BackedUp when some of it is only in the backup store."""
    if outcome.reason == StopReason.ERROR or upload_status == "failed":
        return Phase.FAILED
    return Phase.BACKED_UP if upload_status == "backed_up" else Phase.COMPLETED


def failed_status(reason: str, message: str) -> dict:
    """The final status of a recording that could not start (invalid session, unusable stores)."""
    return {"phase": Phase.FAILED, "stopReason": StopReason.ERROR, "reason": reason, "message": message}


class Recorder:
    def __init__(self, session: Session, *, room: Room, make_ingest: Callable[[], Ingest], uploader: Uploader,
                 spool: Path, progress: ProgressSink, pin: str | None = None, control: PauseControl | None = None,
                 clock: RecordingClock | None = None, upload_timeout: float = 600.0,
                 resume: ResumeRequest | None = None, read_back: Callable[[], Previous] | None = None,
                 stop_cause: Callable[[], str | None] | None = None, spool_budget: SpoolBudget | None = None):
        """``resume`` + ``read_back``: continue an earlier recorder's recording from what the stores hold.
        ``stop_cause``: asked (in a worker thread) when the stop event is set: StopReason.REQUESTED or DELETED,
        or None when nobody asked for the recording to stop (a drain, an eviction, a deleted pod): then this
        recorder stores what it has and leaves the recording open for a replacement. Default: REQUESTED.
        ``spool_budget``: keeps the spool below its limit (None: no limit, the run on its own)."""
        self.session = session
        self.spec = session.spec
        self.room = room
        self.make_ingest = make_ingest
        self.uploader = uploader
        self.spool = spool
        self.progress = progress
        self.pin = pin
        self.control = control or PauseControl(bool(self.spec.paused), session.generation)
        self.applied_generation = session.generation  # status.appliedGeneration: the spec in effect
        self.clock = clock or RecordingClock()
        self.upload_timeout = upload_timeout
        self.resume, self.read_back, self.stop_cause = resume, read_back, stop_cause
        self.spool_budget = spool_budget
        self._spool_full = False  # as last reported
        self._disk_full_before: list[dict] = []  # the manifest's diskFull entries of earlier recorders (resume)
        self.recorder_started_at = now_iso()
        if resume is not None:
            self.recording_id, self.prefix = resume.recording_id or new_recording_id(), resume.prefix
        else:
            self.recording_id = new_recording_id()
            self.prefix = render_prefix(self.spec.storage.prefix if self.spec.storage else None,
                                        room=self.spec.room.id, recording_id=self.recording_id,
                                        started=datetime.now(UTC), session=session.name,
                                        namespace=session.namespace or "")
        self.manifest = ManifestData(
            session={"name": session.name, "namespace": session.namespace},
            tag=self.spec.tag, room={"server": self.spec.room.server, "id": self.spec.room.id},
            recording_id=self.recording_id, prefix=self.prefix, started_at=now_iso())
        self.catalog = Catalog(self.manifest, uploader, segment_seconds=self.spec.recording.segment_seconds)
        self.outputs = Outputs(self.spec.recording, catalog=self.catalog, spool=spool, clock=self.clock,
                               spool_gate=spool_budget, resumed=resume is not None)
        self.participants = self.outputs.participants
        self.phase = Phase.STARTING
        self.paused = False
        self.link = RoomLink(room, room_id=self.spec.room.id, display=self.spec.room.display_name, pin=pin,
                             limit=self.spec.recording.reconnect_seconds, manifest=self.manifest)

    # -- status --------------------------------------------------------------------------------------------
    def status(self) -> dict:
        return {
            "phase": self.phase,
            "recordingId": self.recording_id,
            "startedAt": self.manifest.started_at,
            "stoppedAt": self.manifest.stopped_at,
            **self.outputs.status(),  # participants, activeParticipants, playlists, composite
            "upload": self.uploader.progress().as_status(),
            "manifest": self.catalog.manifest_key,
            "recorderStartedAt": self.recorder_started_at,
            "heartbeatAt": now_iso(),  # reports come at least every PROGRESS_EVERY s while recording
            "appliedGeneration": self.applied_generation,
            "room": self.link.status(),  # Connected, or Reconnecting since a loss (None until joined)
            **({"spool": self.spool_budget.snapshot().as_status(episode_totals(self._disk_full_before))}
               if self.spool_budget is not None else {}),
        }

    def report(self, event: str) -> None:
        self.progress.report(event, self.status())

    # -- the whole life ------------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> dict:
        """Record until a stop reason, store everything, and return the final status (phase, reasons, message)."""
        try:
            for problem in await asyncio.to_thread(self.uploader.preflight):
                log.warning("storage: %s", problem)
        except StoreError as err:
            return failed_status(errors.STORAGE_FAILED, str(err))
        if self.resume is None:
            await asyncio.to_thread(self._claim_prefix)
        self.uploader.start()
        if self.resume is not None:
            try:
                previous = await asyncio.to_thread(self.read_back)
            except (StoreError, ValueError) as err:
                await asyncio.to_thread(self.uploader.close, self.upload_timeout)
                return failed_status(errors.STORAGE_FAILED, f"cannot read back the recording to resume at "
                                                            f"{self.prefix!r}: {err}")
            take_over(self, previous, self.resume)
        outcome = await self._record(stop)
        if not outcome.interrupted:
            self.phase = Phase.UPLOADING
            self.report("stopped")
            if self.resume is not None and "mp4" in self.spec.recording.outputs:
                await asyncio.to_thread(self.outputs.rebuild_mp4s, self.uploader.read_segment)
        result = await asyncio.to_thread(self.uploader.close, self.upload_timeout)
        if self.spool_budget is not None:  # what the upload left in the spool (status.spool, DiskFull)
            await asyncio.to_thread(self.spool_budget.measure)
        message = outcome.message
        if result.status != "uploaded":
            message = f"{message}; {result.message}" if message else result.message
        if outcome.interrupted:  # the phase stays: the recording goes on in a replacement recorder
            return {**self.status(), "interrupted": True, "reason": outcome.reason, "message": message}
        self.phase = final_phase(outcome, result.status)
        return {**self.status(), "stopReason": outcome.reason, "reason": outcome.error_reason or outcome.reason,
                "message": message}

    def _claim_prefix(self) -> None:
        """A prefix that would collide with an earlier recording is made unique: the new recording's manifest.json
        is created only if none is there (Uploader.claim); when one is (a template without {recordingId}, e.g.
        ``meetings/{room}/``), the recording goes to ``<prefix><recordingId>/`` instead, logged, and status and
        manifest name that prefix. A resumed recording keeps its prefix (not called)."""
        taken = self.uploader.claim(manifest_key(self.prefix), self.manifest.render())
        if taken is None:
            return
        unique = f"{self.prefix}{sanitize(self.recording_id)}/"
        log.warning("the prefix %r holds an earlier recording (%s in %s): recording under %r instead",
                    self.prefix, manifest_key(self.prefix), taken, unique)
        self.prefix = self.manifest.prefix = self.catalog.prefix = unique
        self.catalog.manifest_key = manifest_key(unique)
        self.uploader.claim(self.catalog.manifest_key, self.manifest.render())

    async def _record(self, stop: asyncio.Event) -> Outcome:
        """Starting → Recording/Paused → Stopping: join, record until a stop reason, end every ingest and writer."""
        self.catalog.publish_manifest()
        self.report("starting")
        ingest: Ingest | None = None
        outcome = Outcome(StopReason.ERROR, "internal error: the recording was cancelled", errors.INTERNAL)
        try:
            await self.room.connect()
            joined = await self.room.join(self.spec.room.display_name, pin=self.pin)
            self.link.joined()
            ingest = self.make_ingest()
            self.outputs.start()
            presence = Presence(own_id=joined.get("id"))
            self.phase = Phase.RECORDING
            if self.control.paused:
                await self._pause(ingest, report=False)
            self.report("joined")
            await self._apply(presence.apply(joined), ingest)
            outcome = await self._loop(presence, ingest, stop)
        except RecorderError as err:
            outcome = Outcome(StopReason.ERROR, err.message, err.reason)
        except Exception as err:
            log.exception("recording failed")
            outcome = Outcome(StopReason.ERROR, f"internal error: {err!r}", errors.INTERNAL)
        finally:
            if not outcome.interrupted:
                self.phase = Phase.STOPPING
            await self.link.close()  # a stop while reconnecting: the attempts end
            try:
                await self.outputs.close(ingest, interrupted=outcome.interrupted)
            finally:
                await self.room.close()
        if self.spool_budget is not None:  # no more media: a full stretch ends here
            self._sync_disk_full(self.spool_budget.finish())
        if not outcome.interrupted:  # else the recording goes on: its replacement ends it
            self.manifest.stopped_at = now_iso()
            if self.manifest.pauses and self.manifest.pauses[-1]["resumedAt"] is None:
                self.manifest.pauses[-1]["resumedAt"] = self.manifest.stopped_at
            self.manifest.stop_reason = outcome.reason
            self.manifest.message = outcome.message or None
        self.catalog.publish_manifest()
        return outcome

    async def _loop(self, presence: Presence, ingest: Ingest, stop: asyncio.Event) -> Outcome:
        started = time.monotonic()
        idle_since: float | None = None if self._present(presence) else started
        last_progress = last_spool = started
        spool_every = SPOOL_EVERY
        while True:
            generation = self.control.generation  # read before the values: they are at least this generation's
            rec, self.manifest.tag = self.control.live(self.spec)  # maxIdle/maxDurationSeconds, tag: applied live
            data = None
            if not self.link.connected:  # reconnecting: raises RecorderError (JanusLost) when it gives up
                presence = await self._rejoined(presence, ingest)
            else:
                with contextlib.suppress(TimeoutError):
                    data = await asyncio.wait_for(self.room.events.get(), TICK)
            if data is not None:
                await self._apply(presence.apply(data), ingest)
            if self.control.paused != self.paused and (self.control.paused or self.link.connected):
                if self.control.paused:
                    await self._pause(ingest)
                else:
                    await self._resume(presence, ingest)
            if generation not in (None, self.applied_generation) and self.control.paused == self.paused:
                self.applied_generation = generation  # this tick used the spec of ``generation``: say so
                self.report("spec")
            now = time.monotonic()
            if stop.is_set():
                return await self._stopped()
            if rec.max_duration_seconds and now - started >= rec.max_duration_seconds:
                return Outcome(StopReason.MAX_DURATION, f"reached maxDurationSeconds ({rec.max_duration_seconds} s)")
            idle_now = now - self.link.gap_seconds()  # idle time does not count the gaps without the room
            if self._present(presence) if self.link.connected else idle_since is None:  # a gap changes nothing
                idle_since = None
            elif idle_since is None:
                idle_since = idle_now
            elif idle_now - idle_since >= rec.max_idle_seconds:
                if (unrecordable := self.outputs.unrecordable()) is not None:  # nobody could be: say why
                    raise unrecordable
                return Outcome(StopReason.NO_USERS, f"no participant published for {rec.max_idle_seconds} s")
            if not self.paused and not self.room.closed.is_set() and await self.outputs.watch(ingest):
                self.report("participants")
            self._raise_failures(ingest)
            if self.link.connected and self.room.closed.is_set():  # every run ends as at a pause; then rejoin
                self.link.lost()
                if not self.paused:
                    await self.outputs.pause(ingest)
                self.report("room")
            if self.spool_budget is not None and now - last_spool >= spool_every:
                last_spool = now
                spool_every = TICK if (await self._check_spool()).near else SPOOL_EVERY
            if now - last_progress >= PROGRESS_EVERY:
                last_progress = now
                self.report("progress")

    async def _check_spool(self) -> SpoolState:
        """Measure the spool (the writers ask the budget with every packet); report when it fills or drains."""
        state = await asyncio.to_thread(self.spool_budget.measure)
        self._sync_disk_full(state)
        if state.full != self._spool_full:
            self._spool_full = state.full
            self.catalog.publish_manifest()
            self.report("spool")
        return state

    def _sync_disk_full(self, state: SpoolState) -> None:
        """The manifest's diskFull entries: earlier recorders' (resume), then this one's (fresh copies)."""
        if state.episodes or self._disk_full_before:
            self.manifest.disk_full = [*self._disk_full_before, *state.episodes]

    async def _stopped(self) -> Outcome:
        """The stop event (SIGTERM): a stop somebody asked for, or an interruption (drain, eviction, pod deleted)."""
        cause = StopReason.REQUESTED if self.stop_cause is None else await asyncio.to_thread(self.stop_cause)
        if cause is None:
            return Outcome(ConditionReason.INTERRUPTED, "the recorder was stopped although the session was not "
                           "(a drain, an eviction or a deleted pod): a replacement recorder continues the recording")
        return Outcome(cause, "stop requested" if cause == StopReason.REQUESTED else "the session was deleted")

    def _raise_failures(self, ingest: Ingest) -> None:
        """A media or storage failure ends the recording with its own reason."""
        failures = ingest.failures()
        if failures:
            err = failures[0]
            if isinstance(err, RecorderError):
                raise err
            raise RecorderError(errors.INTERNAL, f"media pipeline failed: {err!r}")
        self.outputs.raise_failures()
        fatal = self.uploader.fatal_error
        if fatal is not None:
            raise RecorderError(errors.STORAGE_FAILED, str(fatal))

    # -- presence and pausing --------------------------------------------------------------------------------
    def _present(self, presence: Presence) -> bool:
        return self.outputs.present(presence, paused=self.paused)

    async def _pause(self, ingest: Ingest, *, report: bool = True) -> None:
        """Stop writing media: every recorded participant's ingest ends as if they had left."""
        self.paused = True
        self.phase = Phase.PAUSED
        self.manifest.pauses.append({"pausedAt": now_iso(), "resumedAt": None})
        await self.outputs.pause(ingest)
        log.info("paused")
        if report:
            self.report("paused")

    async def _resume(self, presence: Presence, ingest: Ingest) -> None:
        self.paused = False
        self.phase = Phase.RECORDING
        self.manifest.pauses[-1]["resumedAt"] = now_iso()
        self.outputs.resume()
        log.info("resumed")
        await self._apply([Up(p) for p in list(presence.publishers.values())], ingest)
        self.report("resumed")

    async def _rejoined(self, presence: Presence, ingest: Ingest) -> Presence:
        """Once the room is joined again, the join reply tells who publishes: they are recorded again."""
        if (joined := await self.link.wait(TICK)) is None:
            return presence
        if not self.paused:
            self.outputs.resume()  # the composite's next run (its gap is a discontinuity)
        presence = Presence(own_id=joined.get("id"))
        await self._apply(presence.apply(joined), ingest)
        self.report("room")
        return presence

    async def _apply(self, changes, ingest: Ingest) -> None:
        if self.paused:  # presence is followed; recording starts again on resume
            changes = [c for c in changes if not isinstance(c, Up)]
        if await self.outputs.apply(changes, ingest):
            self.report("participants")

