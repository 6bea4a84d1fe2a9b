"""Pure status logic: observations (the session's status, its recorder pod) -> phase, reason, conditions.

Who writes what:
- the recorder (its own ServiceAccount, status only) reports phase Starting/Recording/Stopping/Uploading and
  the final phase, recordingId, participants, upload progress, playlists, manifest, stopReason, message;
- the operator writes Pending/Starting/Stopping, every phase the recorder cannot report (it could not
  start, it died, it was killed), observedGeneration, pod and the conditions.

The detailed reason of a failure (e.g. RoomNotFound, SecretNotFound, ImagePullFailed) lives in the Ready and
Recording conditions; stopReason keeps the coarse contract value (Error, NoUsers, ...).

A recorder lost while its session was not stopped (pod deleted or evicted, OOM kill, crash, node gone) is an
interruption (``judge_interruption``): the operator starts a replacement that continues the same recording
(``resume_request``), after a backoff (``restart_delay``), at most spec.recording.maxRestarts times; while the
gap lasts status.interruption is set and the Recording and Ready conditions are False with reason Interrupted,
until the replacement reports (``interruption_over``).

A recorder whose spool fills up (the stores lag for long) stops recording new media rather than being evicted
for its spool's size limit, and reports status.spool; from it the DiskFull condition (present once the recorder
reports a spool) and its Events (``disk_full_event``: Warning DiskFull, Normal SpoolAvailable when it drains).
Someone the recorder cannot record (status.participants[].skipped) makes the session Degraded (degraded.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from reel_api import (
    PHASE_AFTER_BACKFILL,
    TERMINAL_PHASES,
    ConditionReason,
    ConditionStatus,
    ConditionType,
    FailureReason,
    Phase,
    RoomState,
    StopReason,
    StorageLocation,
)

from .conditions import condition, find
from .health import health_conditions, observed_generation
from .room_faults import degraded_condition, reconnecting

PHASE_RANK = {
    Phase.PENDING: 0,
    Phase.STARTING: 1,
    Phase.RECORDING: 2,
    Phase.PAUSED: 2,
    Phase.STOPPING: 3,
    Phase.UPLOADING: 4,
    Phase.COMPLETED: 5,
    Phase.BACKED_UP: 5,
    Phase.FAILED: 5,
}

#: Kubernetes' own strings (not Reel's vocabulary) that the operator reads.
POD_FAILED = "Failed"  # a pod's status.phase
POD_PENDING, POD_RUNNING = "Pending", "Running"  # a pod's status.phase
JOB_COMPLETE, JOB_FAILED = "Complete", POD_FAILED  # a Job's condition types (the backfill Job)
OOM_KILLED = "OOMKilled"  # a terminated container's reason
FAILED_MOUNT = "FailedMount"  # a kubelet Event's reason (e.g. a Secret volume that does not exist)
POD_SCHEDULED, UNSCHEDULABLE = "PodScheduled", "Unschedulable"  # a pod condition and the scheduler's reason
WARNING, NORMAL = "Warning", "Normal"  # Event types
CONTAINER_CREATING = "ContainerCreating"  # a container's waiting reason before it starts
POD_UNKNOWN = "Unknown"  # a pod's status.phase when its node stopped reporting
POD_EVICTED, POD_NODE_LOST = "Evicted", "NodeLost"  # a pod's status.reason
POD_READY = "Ready"  # a pod condition
DISRUPTION_TARGET = "DisruptionTarget"  # a pod condition: Kubernetes is about to delete (or has failed) the pod
PREEMPTION_BY_SCHEDULER = "PreemptionByScheduler"  # DisruptionTarget reasons
DELETION_BY_TAINT_MANAGER = "DeletionByTaintManager"
DELETION_BY_POD_GC = "DeletionByPodGC"  # its node is gone
KILLED_EXIT_CODES = (137, 143)  # SIGKILL, SIGTERM
SIGKILLED = 137


def sigkill_hint(exit_code: object, reason: object) -> str:
    """What to add to a message about a recorder that exited 137 (SIGKILL) without OOMKilled: the kernel's OOM
    killer is the usual sender, and the container runtime does not always say so (measured on kind: the same
    16 MiB pod reported OOMKilled, then exit 137 "Error" on its replacement). Pure."""
    if exit_code != SIGKILLED or reason == OOM_KILLED:
        return ""
    return ("; SIGKILL is most often the kernel's OOM killer (the container runtime does not always report "
            "OOMKilled): if it recurs, raise its memory limit (annotation reel.dev/recorder-resources or "
            "REEL_RECORDER_MEMORY_LIMIT)")

#: The backoff before starting the n-th replacement recorder: 2 s · 2^(n-1), at most 30 s.

#: Stop reasons after which the outcome is a normal end (not a failure).
NORMAL_STOPS = frozenset({StopReason.REQUESTED, StopReason.NO_USERS, StopReason.MAX_DURATION, StopReason.DELETED})


def now_utc() -> datetime:
    return datetime.now(UTC)


def rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def is_terminal(phase: str | None) -> bool:
    return phase in TERMINAL_PHASES


def may_advance(current: str | None, new: str, *, backfilled: bool = False) -> bool:
    """Phases only move forward (a late report of an earlier phase is ignored); terminal ones are final, except
    BackedUp -> Completed once the backfill has completed (``backfilled``: the change carries
    status.backfill.completedAt; vocabulary.PHASE_AFTER_BACKFILL)."""
    if current is None or current not in PHASE_RANK:
        return True
    if is_terminal(current):
        return backfilled and (current, new) == PHASE_AFTER_BACKFILL
    return PHASE_RANK[Phase(new)] >= PHASE_RANK[Phase(current)]


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 time from the API (or a datetime) as an aware datetime; None if absent or unreadable."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


# ---------------------------------------------------------------------------------------------------------
# Conditions
# ---------------------------------------------------------------------------------------------------------


def failure_reason(status: Mapping[str, Any]) -> str:
    """The detailed reason of a failed session, as recorded in its Ready condition (or the stop reason)."""
    for cond in status.get("conditions") or []:
        if cond.get("type") == ConditionType.READY and cond.get("status") == ConditionStatus.FALSE and \
                cond.get("reason") not in PHASE_NAMES and cond.get("reason") != ConditionReason.INTERRUPTED:
            return cond["reason"]
    return status.get("stopReason") or Phase.FAILED


PHASE_NAMES = frozenset(p.value for p in Phase)


def desired_conditions(status: Mapping[str, Any], *, reason: str | None = None,
                       generation: int | None = None) -> list[dict[str, Any]]:
    """The conditions for a status (without times). ``reason``: the detailed reason of a failure; ``generation``:
    metadata.generation (status.observedGeneration below it: Reconciling True, health.py)."""
    phase = status.get("phase") or Phase.PENDING
    stop = status.get("stopReason")
    message = status.get("message") or ""
    upload = status.get("upload") or {}
    active = status.get("activeParticipants") or 0
    failed = phase == Phase.FAILED
    why = (reason or failure_reason(status)) if failed else None
    interruption = None if is_terminal(phase) else status.get("interruption")

    lost_room = None if interruption else reconnecting(status)  # the recorder is getting Janus back
    if interruption:
        recording = condition(ConditionType.RECORDING, False, ConditionReason.INTERRUPTED,
                          interruption.get("message") or "")
    elif lost_room:
        recording = condition(ConditionType.RECORDING, False, RoomState.RECONNECTING, lost_room)
    elif phase == Phase.RECORDING:
        if active:
            recording = condition(ConditionType.RECORDING, True, ConditionReason.PARTICIPANTS_PRESENT,
                              f"{active} participant(s) being recorded")
        else:
            recording = condition(ConditionType.RECORDING, True, ConditionReason.WAITING_FOR_PARTICIPANTS,
                              "no participant is publishing")
    elif phase == Phase.PAUSED:
        recording = condition(ConditionType.RECORDING, False, ConditionReason.PAUSED, "spec.paused is true")
    elif phase in (Phase.PENDING, Phase.STARTING):
        recording = condition(ConditionType.RECORDING, False, ConditionReason.STARTING, "the recorder is starting")
    elif failed:
        recording = condition(ConditionType.RECORDING, False, why, message)
    else:
        recording = condition(ConditionType.RECORDING, False, stop or ConditionReason.STOPPED, message)

    segments, pending = upload.get("segments", 0), upload.get("pendingSegments", 0)
    stored = f"{segments - pending} of {segments} segment(s) stored"
    if phase in (Phase.COMPLETED, Phase.BACKED_UP):
        uploaded = condition(ConditionType.UPLOADED, True, ConditionReason.ALL_STORED,
                         stored if segments else "nothing to store")
    elif failed:
        uploaded = condition(ConditionType.UPLOADED, False, why, stored if segments else message)
    else:  # no counts in the message: it would change (and be patched) with every segment
        uploaded = condition(ConditionType.UPLOADED, False,
                         ConditionReason.UPLOADING if segments else ConditionReason.NOTHING_RECORDED,
                         "segments are uploaded while recording; see status.upload" if segments else "")

    location = upload.get("location")
    backfill = status.get("backfill") or {}
    if backfill and phase in (Phase.COMPLETED, Phase.BACKED_UP):
        backed_up = backfill_condition(backfill, phase)
    elif phase == Phase.BACKED_UP or location in (StorageLocation.BACKUP, StorageLocation.MIXED):
        backed_up = condition(ConditionType.BACKED_UP, True, ConditionReason.BACKUP_USED,
                          "primary storage failed: some or all segments are in the backup storage")
    else:
        backed_up = condition(ConditionType.BACKED_UP, False, ConditionReason.NOT_NEEDED, "")

    if failed:
        ready = condition(ConditionType.READY, False, why, message)
    elif interruption:  # a gap in the recording: `kubectl wait --for=condition=Ready` users see it
        ready = condition(ConditionType.READY, False, ConditionReason.INTERRUPTED, interruption.get("message") or "")
    elif lost_room:  # a gap too, shorter: the same recorder gets the room back (or fails with JanusLost)
        ready = condition(ConditionType.READY, False, RoomState.RECONNECTING, lost_room)
    elif phase in (Phase.RECORDING, Phase.PAUSED, Phase.COMPLETED, Phase.BACKED_UP):
        ready = condition(ConditionType.READY, True, phase, message if phase != Phase.RECORDING else "")
    else:
        ready = condition(ConditionType.READY, False, phase, message)
    spool = status.get("spool")
    extra = [disk_full_condition(spool)] if isinstance(spool, Mapping) else []
    degraded = degraded_condition(status)  # someone not (fully) recorded: degraded.py
    gap = ((ConditionReason.INTERRUPTED, interruption.get("message") or "") if interruption else
           (RoomState.RECONNECTING, lost_room) if lost_room else None)
    health = health_conditions(status, failure=why, gap=gap, backed_up=backed_up,  # kstatus, kubectl wait: health.py
                               generation=generation)
    return [recording, uploaded, backed_up, *extra, *([degraded] if degraded else []), *health, ready]


def backfill_condition(backfill: Mapping[str, Any], phase: str) -> dict[str, Any]:
    """BackedUp (True: the backup was used) while and after the backfill (handlers/backfill.py): Backfilling, then
    BackupMoved once Completed, or the FailureReason it gave up with."""
    if phase == Phase.COMPLETED and backfill.get("completedAt"):
        return condition(ConditionType.BACKED_UP, True, ConditionReason.BACKUP_MOVED,
                     f"the primary storage failed during the recording; the backfill of {backfill['completedAt']} "
                     f"moved the backup into it: {backfill.get('message') or ''}".rstrip(": "))
    if backfill.get("gaveUpAt"):
        return condition(ConditionType.BACKED_UP, True, backfill.get("reason") or FailureReason.BACKFILL_TIMEOUT,
                     f"backfill gave up at {backfill['gaveUpAt']}: {backfill.get('message') or ''}")
    return condition(ConditionType.BACKED_UP, True, ConditionReason.BACKFILLING,
                 f"Job {backfill.get('job')} copies what is only in the backup storage into the primary storage "
                 f"(since {backfill.get('startedAt')})")


def disk_full_condition(spool: Mapping[str, Any]) -> dict[str, Any]:
    """DiskFull from the recorder's status.spool. Its message changes only when a full spool drops media, not
    with every measurement (each change is a status patch)."""
    if spool.get("full"):
        limit = f" (limit {spool['limitBytes'] / 2**20:.0f} MiB)" if spool.get("limitBytes") else ""
        return condition(ConditionType.DISK_FULL, True, ConditionReason.SPOOL_FULL,
                     f"the recorder's spool is nearly full{limit}: the stores are not taking segments fast enough "
                     "(see status.upload); segments not stored yet are kept, new media is not recorded until "
                     "uploads make room (what it costs: status.spool)")
    lost = spool.get("droppedSegments") or 0
    return condition(ConditionType.DISK_FULL, False, ConditionReason.SPOOL_AVAILABLE,
                 f"{lost} segment(s), {float(spool.get('droppedSeconds') or 0):.0f} s of media were not recorded "
                 "while the spool was full" if lost else "")


def disk_full_event(old_status: Mapping[str, Any], patch: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """The Event for a DiskFull change in a status patch: Warning DiskFull when it becomes True, Normal
    SpoolAvailable when it becomes False again; None otherwise."""
    new = find(patch.get("conditions"), ConditionType.DISK_FULL)
    if new is None:
        return None
    old = find(old_status.get("conditions"), ConditionType.DISK_FULL)
    was_full = old is not None and old.get("status") == ConditionStatus.TRUE
    if new.get("status") == ConditionStatus.TRUE and not was_full:
        return WARNING, ConditionType.DISK_FULL, new.get("message") or ConditionType.DISK_FULL
    if new.get("status") == ConditionStatus.FALSE and was_full:
        message = "the recorder's spool has room again: recording goes on after a discontinuity"
        return NORMAL, ConditionReason.SPOOL_AVAILABLE, message + (f"; {new['message']}" if new.get("message") else "")
    return None


def merge_conditions(old: Iterable[Mapping[str, Any]], new: Iterable[Mapping[str, Any]], *, generation: int | None,
                     now: datetime) -> list[dict[str, Any]]:
    """API conventions: lastTransitionTime changes only when status changes; observedGeneration on each
    (``generation``: the generation acted on, status.observedGeneration)."""
    previous = {c.get("type"): c for c in old or []}
    out = []
    for cond in new:
        before = previous.get(cond["type"])
        since = before.get("lastTransitionTime") if before and before.get("status") == cond["status"] else None
        item = dict(cond, lastTransitionTime=since or rfc3339(now))
        if generation is not None:
            item["observedGeneration"] = generation
        out.append(item)
    return out


def _comparable(conds: Iterable[Mapping[str, Any]]) -> list[tuple]:
    return sorted((c.get("type"), c.get("status"), c.get("reason"), c.get("message") or "",
                   c.get("observedGeneration")) for c in conds or [])


def status_patch(status: Mapping[str, Any], changes: Mapping[str, Any], *, generation: int | None, now: datetime,
                 reason: str | None = None, acted: int | None = None) -> dict[str, Any]:
    """A merge patch for .status: ``changes`` applied (phase only forward), conditions and observedGeneration
    recomputed. ``generation``: metadata.generation; ``acted``: a generation the operator has just acted on
    itself (health.observed_generation: while a recorder runs, observedGeneration follows what it applied).
    Empty when nothing would change."""
    changes = dict(changes)
    backfilled = bool((changes.get("backfill") or {}).get("completedAt"))
    if "phase" in changes and not may_advance(status.get("phase"), changes["phase"], backfilled=backfilled) and \
            changes["phase"] != status.get("phase"):  # the same final phase may be refined (reason, message)
        changes = {k: v for k, v in changes.items() if k not in ("phase", "stopReason", "message")}
        reason = None
    merged = {**status, **changes}
    if is_terminal(merged.get("phase")) and merged.get("interruption"):  # a final phase ends any interruption
        changes["interruption"] = merged["interruption"] = None
    observed = observed_generation(merged, generation, acted=acted)
    merged["observedGeneration"] = observed
    conditions = merge_conditions(status.get("conditions") or [],
                                  desired_conditions(merged, reason=reason, generation=generation),
                                  generation=observed, now=now)
    patch = {k: v for k, v in changes.items() if status.get(k) != v}
    if _comparable(conditions) != _comparable(status.get("conditions") or []):
        patch["conditions"] = conditions
    if observed is not None and status.get("observedGeneration") != observed:
        patch["observedGeneration"] = observed
    return patch


def transition(old_status: Mapping[str, Any], patch: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """The Event to post for a status patch: (type, reason, message), or None when the phase did not change.

    The "previous phase" is what the conditions said (the recorder may have moved the phase meanwhile). A new
    status.interruption posts a Warning Interrupted, its removal (not by a final phase) a Normal Resumed."""
    new_phase = patch.get("phase") or old_status.get("phase")
    old_interruption = old_status.get("interruption")
    if patch.get("interruption") and patch["interruption"] != old_interruption:
        return WARNING, ConditionReason.INTERRUPTED, patch["interruption"].get("message") or ConditionReason.INTERRUPTED
    if "interruption" in patch and not patch["interruption"] and old_interruption and not is_terminal(new_phase):
        merged = {**old_status, **patch}
        what = f"recording {merged['recordingId']}" if merged.get("recordingId") else "the recording"
        reason, since = old_interruption.get("reason"), old_interruption.get("since")
        return NORMAL, ConditionReason.RESUMED, f"a new recorder continues {what} after the interruption ({reason}) " \
                                                f"of {since}"
    old_ready = find(old_status.get("conditions"), ConditionType.READY)
    new_ready = find(patch.get("conditions"), ConditionType.READY)
    if new_ready is None or (old_ready and (old_ready.get("status"), old_ready.get("reason")) ==
                             (new_ready.get("status"), new_ready.get("reason"))):
        return None
    if new_phase == Phase.FAILED:
        message = new_ready.get("message") or "the recording failed"
        return WARNING, new_ready["reason"], f"{Phase.FAILED}: {message}"
    merged = {**old_status, **patch}
    detail = merged.get("message") or ""
    if new_phase in (Phase.COMPLETED, Phase.BACKED_UP, Phase.STOPPING, Phase.UPLOADING) and merged.get("stopReason"):
        detail = f"stop reason {merged['stopReason']}" + (f": {detail}" if detail else "")
    if new_phase == Phase.RECORDING and merged.get("recordingId"):
        detail = f"recording {merged['recordingId']}"
    return NORMAL, new_phase, f"{new_phase}{': ' + detail if detail else ''}"
