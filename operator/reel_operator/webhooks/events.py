"""A session's status -> the webhook events not told yet (pure: unit tests call ``derive`` directly).

``derive(told, status, now)`` compares the status with ``told``, a small summary of what has already been
told (kept in the journal, so an operator restart tells nothing twice and misses nothing), and returns the new
events in order together with the new summary. It reads facts rather than edges, so a status that jumped
(several recorder reports between two watch events, or an operator that was down) still yields every event:
a participant who joined and left meanwhile gives ``participant.joined`` then ``participant.left``.

| event (WebhookEvent) | when | data |
|---|---|---|
| recording.started | phase Recording/Paused (or something recorded) first seen | startedAt |
| participant.joined / .left | a participant's joinedAt / leftAt changes (a rejoin is joined again) | participant |
| participant.skipped | a stream of a participant is newly listed as skipped | participant, streams |
| upload.progress | status.upload changed, at most every ``progress_every`` s, while recording or storing | upload |
| recording.paused / .unpaused | phase Paused / Recording again | |
| recording.interrupted / .resumed | status.interruption or room Reconnecting begins / ends (not at the end) | cause |
| recording.stopped | Stopping with a stop reason, Uploading, or a final phase, after a start | stopReason, stoppedAt |
| recording.uploaded, recording.completed | phase Completed (also after a backfill) | manifest, playlists, upload |
| recording.backedUp | phase BackedUp | manifest, upload |
| recording.failed | phase Failed | reason (the FailureReason), message, stopReason |

A final event waits for the operator's conditions of that phase (Finished True, with the phase as its reason);
``recording.failed`` also for the detailed FailureReason: the operator first sees the recorder's report (reason
Error, the stop reason) and learns the detail from the pod's termination message a moment later. With ``settle``
(delivery.py passes it ``FINAL_SETTLE_SECONDS`` after the phase turned Failed) it goes with what there is.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from reel_api.vocabulary import (
    TERMINAL_PHASES,
    ConditionStatus,
    ConditionType,
    Phase,
    RoomState,
    StopReason,
    WebhookEvent,
)

from ..conditions import find

#: The summary of what was told, for a session nothing was told of yet.
NOTHING_TOLD: dict[str, Any] = {}
MANIFEST_NAME = "manifest.json"

Event = tuple[str, dict[str, Any]]  # (WebhookEvent, data)


def _participant(p: Mapping[str, Any]) -> dict[str, Any]:
    return {k: p.get(k) for k in ("id", "display", "joinedAt", "leftAt", "playlist") if p.get(k) is not None}


def _upload_key(upload: Mapping[str, Any]) -> list:
    return [upload.get(k) for k in ("segments", "pendingSegments", "recordedBytes", "storedBytes")]


def _gap(status: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """The gap under way: (a key that changes with each new gap, what to tell), or None."""
    interruption = status.get("interruption")
    if interruption:
        return (f"recorder:{interruption.get('since')}",
                {"cause": interruption.get("reason"), "message": interruption.get("message") or "",
                 "since": interruption.get("since")})
    room = status.get("room") or {}
    if room.get("state") == RoomState.RECONNECTING:
        return (f"room:{room.get('since')}", {"cause": RoomState.RECONNECTING, "message": room.get("message") or "",
                                              "since": room.get("since")})
    return None


def _concluded(status: Mapping[str, Any], settle: bool) -> bool:
    """Whether the operator has written the conditions of the final phase (Finished True) and, for Failed, Ready
    carries the detailed reason (not just the stop reason Error), or ``settle``: waited long enough."""
    finished = find(status.get("conditions"), ConditionType.FINISHED) or {}
    if finished.get("status") != ConditionStatus.TRUE or finished.get("reason") != status.get("phase"):
        return False
    ready = find(status.get("conditions"), ConditionType.READY) or {}
    return status.get("phase") != Phase.FAILED or settle or ready.get("reason") not in (None, StopReason.ERROR)


def waiting_for_final(told: Mapping[str, Any], status: Mapping[str, Any]) -> bool:
    """Whether derive held a final event back (see _concluded)."""
    return status.get("phase") in TERMINAL_PHASES and told.get("final") != status.get("phase")


def _recorded(status: Mapping[str, Any]) -> bool:
    """Whether anything was recorded (a status that jumped past Recording). Not startedAt: the recorder sets it
    when it starts, also when it then fails to join the room."""
    upload = status.get("upload") or {}
    return bool(upload.get("segments")) or any(p.get("joinedAt") for p in status.get("participants") or [])


def _participants(told: dict[str, Any], status: Mapping[str, Any], out: list[Event]) -> None:
    seen = told.setdefault("participants", {})
    for p in status.get("participants") or []:
        pid = str(p.get("id"))
        before = seen.get(pid, {})
        now = {"j": p.get("joinedAt"), "l": p.get("leftAt"),
               "s": sorted({f"{s.get('kind')}:{s.get('reason')}" for s in p.get("skipped") or []})}
        if now["j"] and now["j"] != before.get("j"):
            out.append((WebhookEvent.PARTICIPANT_JOINED, {"participant": _participant(p)}))
        new_skips = [s for s in p.get("skipped") or [] if f"{s.get('kind')}:{s.get('reason')}" not in
                     (before.get("s") or [])]
        if new_skips:
            out.append((WebhookEvent.PARTICIPANT_SKIPPED, {"participant": _participant(p), "streams": [
                {k: s.get(k) for k in ("kind", "codec", "reason", "message")} for s in new_skips]}))
        if now["l"] and now["l"] != before.get("l"):
            out.append((WebhookEvent.PARTICIPANT_LEFT, {"participant": _participant(p)}))
        seen[pid] = now


def derive(told: Mapping[str, Any], status: Mapping[str, Any], now: datetime, *,
           progress_every: float = 60.0, settle: bool = False) -> tuple[list[Event], dict[str, Any]]:
    """The events of ``status`` not in ``told`` (in order), and the new summary of what was told."""
    told = {**told, "participants": dict(told.get("participants") or {})}
    out: list[Event] = []
    phase = status.get("phase")
    final = phase in TERMINAL_PHASES
    if phase is None:
        return out, told
    if not told.get("started") and (phase in (Phase.RECORDING, Phase.PAUSED) or _recorded(status)):
        told["started"] = True
        out.append((WebhookEvent.STARTED, {"startedAt": status.get("startedAt")}))
    if told.get("started"):
        _participants(told, status, out)
        gap = _gap(status) if not final else None
        if gap is not None and gap[0] != told.get("gap"):
            told["gap"] = gap[0]
            out.append((WebhookEvent.INTERRUPTED, gap[1]))
        elif gap is None and told.get("gap"):
            told["gap"] = None
            if not final:
                out.append((WebhookEvent.RESUMED, {}))
        if phase == Phase.PAUSED and not told.get("paused"):
            told["paused"] = True
            out.append((WebhookEvent.PAUSED, {}))
        elif phase != Phase.PAUSED and told.get("paused"):
            told["paused"] = False
            if phase == Phase.RECORDING:
                out.append((WebhookEvent.UNPAUSED, {}))
        upload = status.get("upload")
        if upload and not final and _upload_key(upload) != told.get("upload"):
            last = told.get("progressAt")
            if last is None or now.timestamp() - last >= progress_every:
                told["upload"], told["progressAt"] = _upload_key(upload), now.timestamp()
                out.append((WebhookEvent.UPLOAD_PROGRESS, {"upload": dict(upload)}))
        ending = phase == Phase.UPLOADING or final or (phase == Phase.STOPPING and status.get("stopReason"))
        if ending and not told.get("stopped"):
            told["stopped"] = True
            out.append((WebhookEvent.STOPPED, {"stopReason": status.get("stopReason"),
                                               "stoppedAt": status.get("stoppedAt")}))
    if final and told.get("final") != phase and _concluded(status, settle):
        told["final"] = phase
        stored = {"manifest": status.get("manifest"), "playlists": list(status.get("playlists") or []),
                  "upload": dict(status.get("upload") or {})}
        if phase == Phase.COMPLETED:
            out.append((WebhookEvent.UPLOADED, stored))
            out.append((WebhookEvent.COMPLETED, {**stored, "stopReason": status.get("stopReason")}))
        elif phase == Phase.BACKED_UP:
            out.append((WebhookEvent.BACKED_UP, {**stored, "stopReason": status.get("stopReason")}))
        else:
            ready = find(status.get("conditions"), ConditionType.READY) or {}
            out.append((WebhookEvent.FAILED, {"reason": ready.get("reason"), "message": status.get("message") or "",
                                              "stopReason": status.get("stopReason")}))
    return out, told


def prefix_of(status: Mapping[str, Any]) -> str | None:
    """The recording's prefix in the store: status.manifest without manifest.json (None until reported)."""
    manifest = status.get("manifest") or ""
    return manifest[:-len(MANIFEST_NAME)] if manifest.endswith(MANIFEST_NAME) else None


def envelope(meta: Mapping[str, Any], status: Mapping[str, Any], sequence: int, event: Event,
             now: datetime) -> dict[str, Any]:
    """The JSON body of one event. ``id`` (also the webhook-id header) is the session's uid and the sequence
    number: the same for every attempt, and after an operator restart."""
    kind, data = event
    uid = meta.get("uid") or f"{meta.get('namespace')}/{meta.get('name')}"
    return {"id": f"{uid}.{sequence}", "type": str(kind), "sequence": sequence,
            "time": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "session": {"namespace": meta.get("namespace"), "name": meta.get("name"), "uid": meta.get("uid")},
            "recordingId": status.get("recordingId"), "prefix": prefix_of(status), "data": data}
