"""The conditions tools read to tell a session's health: kstatus (Flux), `kubectl wait`, Argo CD.

Besides Ready (status.desired_conditions: True while recording or paused and after a good end, so
``kubectl wait --for=condition=Ready`` returns once a recording is under way), each session has:

- ``Reconciling`` (kstatus "abnormal-true"): True while Reel is working toward a steady state: Pending,
  Starting, Stopping, Uploading, a lost recorder being replaced (Interrupted), the room being rejoined
  (Reconnecting), a BackedUp session being backfilled (Backfilling); reason = that phase or that reason.
- ``Stalled`` (kstatus): True when it cannot go on without a person: Failed (reason: the FailureReason), or a
  BackedUp session whose backfill gave up (reason: BackfillTimeout/BackfillFailed).
- ``Finished``: True in a final phase, reason the phase (Completed, BackedUp, Failed):
  ``kubectl wait --for=condition=Finished`` waits for the end of the recording, whatever the outcome.

kstatus reads a session as InProgress while Reconciling is True (or observedGeneration lags metadata.generation),
Failed while Stalled is True, Current otherwise. The Argo CD health check (charts/reel/argocd/health.lua) reads
the phase and these conditions. Pure functions; status.desired_conditions calls ``health_conditions``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reel_api.vocabulary import TERMINAL_PHASES, ConditionReason, ConditionType, Phase

from .conditions import condition

#: Phases during which Reel is on its way to a steady one (Recording/Paused, or a final phase).
WORKING_PHASES = frozenset({Phase.PENDING, Phase.STARTING, Phase.STOPPING, Phase.UPLOADING})


def health_conditions(status: Mapping[str, Any], *, failure: str | None, gap: tuple[str, str] | None,
                      backed_up: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Reconciling, Stalled and Finished for ``status``. ``failure``: the FailureReason of a Failed session;
    ``gap``: (reason, message) of an interruption or a lost room connection, if any; ``backed_up``: the BackedUp
    condition just computed (its reason tells the backfill's state)."""
    phase = status.get("phase") or Phase.PENDING
    message = status.get("message") or ""
    backfill = status.get("backfill") or {}
    final = phase in TERMINAL_PHASES
    gave_up = phase == Phase.BACKED_UP and bool(backfill.get("gaveUpAt"))

    if phase in WORKING_PHASES and not gap:
        reconciling = condition(ConditionType.RECONCILING, True, phase, message)
    elif gap and not final:
        reconciling = condition(ConditionType.RECONCILING, True, *gap)
    elif phase == Phase.BACKED_UP and backfill and not gave_up:
        reconciling = condition(ConditionType.RECONCILING, True, ConditionReason.BACKFILLING,
                                backed_up.get("message", ""))
    else:
        reconciling = condition(ConditionType.RECONCILING, False, phase)

    if phase == Phase.FAILED:
        stalled = condition(ConditionType.STALLED, True, failure or Phase.FAILED, message)
    elif gave_up:
        stalled = condition(ConditionType.STALLED, True, backed_up.get("reason") or phase, backed_up.get("message", ""))
    else:
        stalled = condition(ConditionType.STALLED, False, phase)

    finished = condition(ConditionType.FINISHED, final, phase, message if final else "")
    return [reconciling, stalled, finished]

