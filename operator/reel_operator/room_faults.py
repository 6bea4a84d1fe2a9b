"""What the room does to a recording, as conditions and Events: someone who cannot be recorded (Degraded) and
the connection to Janus lost for a while (Reconnecting). The recorder reports both; the operator shows them.

Participants: the recorder lists what it cannot record of each participant in
``status.participants[].skipped`` (an unsupported codec, Janus not forwarding them, no media coming:
reel_api.vocabulary.SkipReason); the others are recorded all the same. The operator turns that into:

- ``Degraded`` True, reason ParticipantSkipped, its message naming each skipped participant and stream (what to
  do is in status.participants[].skipped[].message); False (AllRecorded) once nobody is skipped any more. The
  condition appears with the first skip: a session that never skipped anyone has no Degraded condition.
- a Warning Event ParticipantSkipped whenever the condition becomes True or its list changes.

The room: while ``status.room.state`` is Reconnecting (the recorder lost its Janus connection and is getting it
back, for up to spec.recording.reconnectSeconds) nothing is recorded: the Recording and Ready conditions are
False with reason Reconnecting (``reconnecting``), a Warning Event Reconnecting names the server and the error,
and a Normal Event Reconnected follows when the recorder is back in the room (``room_event``).

Pure functions; status.desired_conditions and handlers/common.update_status call them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reel_api.vocabulary import ConditionReason, ConditionStatus, ConditionType, Phase, RoomState

from .conditions import condition, find

WARNING = "Warning"
NORMAL = "Normal"


def skipped_of(status: Mapping[str, Any]) -> list[str]:
    """One line per skipped stream: ``'judy' (8123): video VP8 (CodecUnsupported)``."""
    out = []
    for p in status.get("participants") or []:
        for item in p.get("skipped") or []:
            codec = f" {item['codec']}" if item.get("codec") else ""
            out.append(f"{p.get('display')!r} ({p.get('id')}): {item.get('kind')}{codec} ({item.get('reason')})")
    return out


def degraded_condition(status: Mapping[str, Any]) -> dict[str, Any] | None:
    """Degraded for ``status`` (its ``conditions`` are the ones before this change), or None when there is none
    to show (nobody skipped, and nobody ever was)."""
    skipped = skipped_of(status)
    if skipped:
        return condition(ConditionType.DEGRADED, True, ConditionReason.PARTICIPANT_SKIPPED,
                         "not recorded: " + "; ".join(skipped) + " (see status.participants[].skipped)")
    if find(status.get("conditions"), ConditionType.DEGRADED) is not None:
        return condition(ConditionType.DEGRADED, False, ConditionReason.ALL_RECORDED)
    return None


def skipped_event(old_status: Mapping[str, Any], patch: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """Warning ParticipantSkipped when Degraded becomes True, or its list changes, in ``patch``."""
    new = find(patch.get("conditions"), ConditionType.DEGRADED)
    if new is None or new.get("status") != ConditionStatus.TRUE:
        return None
    old = find(old_status.get("conditions"), ConditionType.DEGRADED)
    if old is not None and old.get("status") == ConditionStatus.TRUE and old.get("message") == new.get("message"):
        return None
    return WARNING, ConditionReason.PARTICIPANT_SKIPPED, new.get("message") or ConditionReason.PARTICIPANT_SKIPPED


def reconnecting(status: Mapping[str, Any]) -> str | None:
    """The recorder's message while it is getting its Janus connection back (None when it is not)."""
    room = status.get("room")
    if status.get("phase") not in (Phase.RECORDING, Phase.PAUSED) or not isinstance(room, Mapping) or \
            room.get("state") != RoomState.RECONNECTING:
        return None
    return f"the connection to Janus was lost; reconnecting: {room.get('message') or ''}".rstrip(": ")


def room_event(old_status: Mapping[str, Any], patch: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """Warning Reconnecting when the Recording condition in ``patch`` turns to Reconnecting, Normal Reconnected
    when it leaves it while the session still records (the recorder writes status.room itself: the operator
    sees the change in the conditions it recomputes)."""
    new_conds = patch.get("conditions")
    if new_conds is None:
        return None
    recording = find(new_conds, ConditionType.RECORDING) or {}
    old = (find(old_status.get("conditions"), ConditionType.RECORDING) or {}).get("reason")
    new = recording.get("reason")
    if new == RoomState.RECONNECTING and old != RoomState.RECONNECTING:
        return WARNING, RoomState.RECONNECTING, recording.get("message") or RoomState.RECONNECTING
    if old == RoomState.RECONNECTING and new in (ConditionReason.PARTICIPANTS_PRESENT,
                                                  ConditionReason.WAITING_FOR_PARTICIPANTS, ConditionReason.PAUSED):
        room = {**old_status, **patch}.get("room") or {}
        return NORMAL, ConditionReason.RECONNECTED, f"back in the room after losing the connection to Janus " \
                                                    f"(reconnect {room.get('reconnects') or 1}): each playlist goes " \
                                                    "on after a discontinuity"
    return None
