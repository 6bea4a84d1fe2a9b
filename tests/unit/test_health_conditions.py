"""Ready, Reconciling, Stalled and Finished for every phase (health.py, status.desired_conditions): what
`kubectl wait --for=condition=...` and kstatus (Flux) read, with observedGeneration on status and each condition."""

from datetime import UTC, datetime

import pytest

from reel_api import ConditionReason, ConditionType, FailureReason, Phase
from reel_operator import status as st
from reel_operator.health import observed_generation

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


# -- observedGeneration moves only when the generation was acted on (health.observed_generation) -------------------


@pytest.mark.parametrize("phase", [None, Phase.PENDING, Phase.COMPLETED, Phase.BACKED_UP, Phase.FAILED])
def test_without_a_running_recorder_the_operator_acts_on_each_generation(phase):
    status = {"observedGeneration": 1, "appliedGeneration": 1, **({"phase": phase} if phase else {})}
    assert observed_generation(status, 4) == 4


@pytest.mark.parametrize("phase", [Phase.STARTING, Phase.RECORDING, Phase.PAUSED, Phase.STOPPING, Phase.UPLOADING])
def test_with_a_running_recorder_it_follows_what_the_recorder_applied(phase):
    status = {"phase": phase, "observedGeneration": 2, "appliedGeneration": 2}
    assert observed_generation(status, 3) == 2  # edited, not applied yet
    assert observed_generation(dict(status, appliedGeneration=3), 3) == 3
    assert observed_generation(dict(status, appliedGeneration=5), 3) == 3  # never above metadata.generation
    assert observed_generation(dict(status, appliedGeneration=1), 3) == 2  # never backwards
    assert observed_generation(status, 3, acted=3) == 3  # the operator acted on it (pod built, stop sent)
    assert observed_generation({"phase": phase}, 3) is None  # nothing known yet: not set
    assert observed_generation(status, None) == 2


def test_a_live_edit_keeps_reconciling_true_until_the_recorder_applied_it():
    recording = {"phase": Phase.RECORDING, "activeParticipants": 1, "observedGeneration": 1, "appliedGeneration": 1}
    steady = st.status_patch(recording, {}, generation=1, now=NOW)
    status = {**recording, **steady}
    assert {c["type"]: c["status"] for c in status["conditions"]}[ConditionType.RECONCILING] == F

    edited = st.status_patch(status, {}, generation=2, now=NOW)  # e.g. maxDurationSeconds changed
    assert "observedGeneration" not in edited  # still 1
    c = {x["type"]: x for x in edited["conditions"]}
    assert (c[ConditionType.RECONCILING]["status"], c[ConditionType.RECONCILING]["reason"]) == \
        (T, ConditionReason.APPLYING_SPEC)
    assert "generation 2" in c[ConditionType.RECONCILING]["message"]
    assert c[ConditionType.READY]["status"] == T  # still recording
    assert {x["observedGeneration"] for x in edited["conditions"]} == {1}
    status = {**status, **edited}

    applied = st.status_patch(status, {"appliedGeneration": 2}, generation=2, now=NOW)  # the recorder's report
    assert applied["observedGeneration"] == 2
    c = {x["type"]: x for x in applied["conditions"]}
    assert c[ConditionType.RECONCILING]["status"] == F
    assert {x["observedGeneration"] for x in applied["conditions"]} == {2}


def test_a_final_phase_catches_up_at_once():
    status = {"phase": Phase.UPLOADING, "observedGeneration": 2, "appliedGeneration": 2}
    assert "observedGeneration" not in st.status_patch(status, {}, generation=3, now=NOW)
    done = st.status_patch(status, {"phase": Phase.COMPLETED, "stopReason": "Requested"}, generation=3, now=NOW)
    assert done["observedGeneration"] == 3
    assert {c["type"]: c["status"] for c in done["conditions"]}[ConditionType.RECONCILING] == F
