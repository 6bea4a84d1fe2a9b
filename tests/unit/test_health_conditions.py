"""Ready, Reconciling, Stalled and Finished for every phase (health.py, status.desired_conditions): what
`kubectl wait --for=condition=...` and kstatus (Flux) read, with observedGeneration on status and each condition."""

from datetime import UTC, datetime

import pytest

from reel_api import ConditionReason, ConditionType, FailureReason, Phase
from reel_operator import status as st

NOW = datetime(2026, 1, 1, tzinfo=UTC)
T, F = "True", "False"


def conds(status):
    return {c["type"]: (c["status"], c["reason"]) for c in st.desired_conditions(status)}


# phase -> (Ready, Reconciling, Stalled, Finished) statuses
TABLE = {
    Phase.PENDING: (F, T, F, F),
    Phase.STARTING: (F, T, F, F),
    Phase.RECORDING: (T, F, F, F),
    Phase.PAUSED: (T, F, F, F),
    Phase.STOPPING: (F, T, F, F),
    Phase.UPLOADING: (F, T, F, F),
    Phase.COMPLETED: (T, F, F, T),
    Phase.BACKED_UP: (T, F, F, T),
    Phase.FAILED: (F, F, T, T),
}


@pytest.mark.parametrize("phase", list(Phase))
def test_conditions_of_each_phase(phase):
    got = conds({"phase": phase, "stopReason": "Error" if phase == Phase.FAILED else None})
    types = (ConditionType.READY, ConditionType.RECONCILING, ConditionType.STALLED, ConditionType.FINISHED)
    assert tuple(got[t][0] for t in types) == TABLE[phase]
    assert got[ConditionType.FINISHED][1] == phase  # the reason of Finished is the phase


def test_ready_is_true_once_recording_so_kubectl_wait_returns_then():
    assert conds({"phase": Phase.STARTING})[ConditionType.READY] == (F, Phase.STARTING)
    assert conds({"phase": Phase.RECORDING})[ConditionType.READY] == (T, Phase.RECORDING)
    assert conds({"phase": Phase.RECORDING, "activeParticipants": 0})[ConditionType.READY][0] == T  # nobody yet


def test_a_gap_is_reconciling_and_not_ready():
    lost = {"phase": Phase.RECORDING, "interruption": {"since": "2026-01-01T00:00:00Z", "reason": "Evicted",
                                                       "message": "evicted"}}
    assert conds(lost)[ConditionType.RECONCILING] == (T, ConditionReason.INTERRUPTED)
    assert conds(lost)[ConditionType.READY] == (F, ConditionReason.INTERRUPTED)
    rejoining = {"phase": Phase.PAUSED, "room": {"state": "Reconnecting", "message": "refused"}}
    assert conds(rejoining)[ConditionType.RECONCILING] == (T, "Reconnecting")
    assert conds(rejoining)[ConditionType.STALLED][0] == F


def test_failed_is_stalled_with_its_failure_reason():
    failed = {"phase": Phase.FAILED, "stopReason": "Error", "message": "no such room"}
    got = st.desired_conditions(failed, reason=FailureReason.ROOM_NOT_FOUND)
    stalled = next(c for c in got if c["type"] == ConditionType.STALLED)
    assert (stalled["status"], stalled["reason"], stalled["message"]) == (T, FailureReason.ROOM_NOT_FOUND,
                                                                          "no such room")


def test_backfill_is_reconciling_then_stalled_when_it_gives_up():
    backed_up = {"phase": Phase.BACKED_UP, "upload": {"location": "mixed"}}
    assert conds(backed_up)[ConditionType.RECONCILING] == (F, Phase.BACKED_UP)  # the timer starts the Job
    running = dict(backed_up, backfill={"job": "j-1", "startedAt": "2026-01-01T00:00:00Z"})
    assert conds(running)[ConditionType.RECONCILING] == (T, ConditionReason.BACKFILLING)
    gave_up = dict(backed_up, backfill={"gaveUpAt": "2026-01-01T01:00:00Z", "reason": FailureReason.BACKFILL_FAILED})
    assert conds(gave_up)[ConditionType.RECONCILING][0] == F
    assert conds(gave_up)[ConditionType.STALLED] == (T, FailureReason.BACKFILL_FAILED)
    done = dict(backed_up, phase=Phase.COMPLETED, backfill={"completedAt": "2026-01-01T01:00:00Z"})
    assert conds(done)[ConditionType.FINISHED] == (T, Phase.COMPLETED)
    assert conds(done)[ConditionType.STALLED][0] == F


def test_status_patch_carries_observed_generation_on_status_and_each_condition():
    patch = st.status_patch({}, {"phase": Phase.PENDING}, generation=3, now=NOW)
    assert patch["observedGeneration"] == 3
    assert {c["observedGeneration"] for c in patch["conditions"]} == {3}
    types = {c["type"] for c in patch["conditions"]}
    assert {ConditionType.READY, ConditionType.RECONCILING, ConditionType.STALLED, ConditionType.FINISHED} <= types
    # a new generation moves every condition's observedGeneration, not their lastTransitionTime
    later = st.status_patch({**patch}, {}, generation=4, now=datetime(2026, 1, 2, tzinfo=UTC))
    assert {c["observedGeneration"] for c in later["conditions"]} == {4}
    assert {c["lastTransitionTime"] for c in later["conditions"]} == {"2026-01-01T00:00:00Z"}
