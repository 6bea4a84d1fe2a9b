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
Failed while Stalled is True, Current otherwise.

``status.observedGeneration`` moves only when a generation was acted on (``observed_generation``): while no recorder
runs (Pending, a final phase) the operator acts on each one itself; while one runs (Starting .. Uploading), a spec
edit (paused, maxDurationSeconds, maxIdleSeconds, tag) is acted on once the recorder has applied it and said so
(status.appliedGeneration), or when the operator acted on it (built the recorder pod from it, stopped the recorder
for spec.stop). Meanwhile Reconciling is True with reason ApplyingSpec (unless a phase of its own already says
Reel is at work). The Argo CD health check (charts/reel/argocd/health.lua) reads
the phase and these conditions. Pure functions; status.desired_conditions calls ``health_conditions``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reel_api.vocabulary import TERMINAL_PHASES, ConditionReason, ConditionType, Phase

from .conditions import condition

#: Phases during which Reel is on its way to a steady one (Recording/Paused, or a final phase).
WORKING_PHASES = frozenset({Phase.PENDING, Phase.STARTING, Phase.STOPPING, Phase.UPLOADING})

#: Phases during which a recorder holds the spec: a spec edit is acted on once that recorder applied it.
RECORDER_PHASES = frozenset({Phase.STARTING, Phase.RECORDING, Phase.PAUSED, Phase.STOPPING, Phase.UPLOADING})


def observed_generation(status: Mapping[str, Any], generation: int | None, *, acted: int | None = None) -> int | None:
    """status.observedGeneration for a session at metadata.generation ``generation`` whose (merged) status is
    ``status``. No recorder at work (phase absent, Pending, or final): ``generation`` (the operator acts on every
    edit itself). A recorder at work: the highest of the current observedGeneration, the recorder's
    status.appliedGeneration and ``acted`` (a generation the operator itself acted on just now), never above
    ``generation``; None while none of them is known."""
    if generation is None:
        return status.get("observedGeneration")
    if (status.get("phase") or Phase.PENDING) not in RECORDER_PHASES:
        return generation
    known = [g for g in (status.get("observedGeneration"), status.get("appliedGeneration"), acted)
             if isinstance(g, int)]
    return min(max(known), generation) if known else None


def health_conditions(status: Mapping[str, Any], *, failure: str | None, gap: tuple[str, str] | None,
                      backed_up: Mapping[str, Any], generation: int | None = None) -> list[dict[str, Any]]:
    """Reconciling, Stalled and Finished for ``status``. ``failure``: the FailureReason of a Failed session;
    ``gap``: (reason, message) of an interruption or a lost room connection, if any; ``backed_up``: the BackedUp
    condition just computed (its reason tells the backfill's state); ``generation``: metadata.generation (a
    status.observedGeneration below it makes Reconciling True: ApplyingSpec)."""
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
    elif lags(status, generation):
        reconciling = condition(ConditionType.RECONCILING, True, ConditionReason.APPLYING_SPEC,
                                f"the recorder has not applied spec generation {generation} yet (observed "
                                f"{status.get('observedGeneration')}); it reads the spec every few seconds")
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


def lags(status: Mapping[str, Any], generation: int | None) -> bool:
    """Whether status.observedGeneration is known and below ``generation``."""
    observed = status.get("observedGeneration")
    return isinstance(observed, int) and generation is not None and observed < generation
