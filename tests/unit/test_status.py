"""reel_operator.status (observations -> phase, reason, conditions) and the AlreadyRecording ordering."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from reel_api import RecordingSessionStatus
from reel_operator import interruptions as irs
from reel_operator import lock, podstate
from reel_operator import status as st

NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
CREATED = (NOW - timedelta(seconds=10)).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod(*, phase="Pending", state=None, last_state=None, conditions=(), deleting=False, created=CREATED, reason=None):
    status = {"phase": phase, "conditions": list(conditions)}
    if state is not None:
        status["containerStatuses"] = [{"name": "recorder", "state": state, "lastState": last_state or {}}]
    if reason:
        status["reason"] = reason
        status["message"] = f"pod {reason}"
    meta = {"name": "reel-rec-s", "namespace": "media", "creationTimestamp": created}
    if deleting:
        meta["deletionTimestamp"] = CREATED
    return {"metadata": meta, "spec": {"containers": [{"name": "recorder", "image": "reel/recorder:1"}]},
            "status": status}


def judge(p, **kw):
    kw.setdefault("start_timeout", 60)
    return podstate.judge_pod(podstate.pod_view(p, gone=kw.pop("gone", False)), namespace="media", now=NOW, **kw)


def terminated(exit_code=0, message="", reason="Completed"):
    return {"terminated": {"exitCode": exit_code, "reason": reason, "message": message}}


# -- phases ------------------------------------------------------------------------------------------------


def test_phases_only_move_forward():
    assert st.may_advance(None, "Pending")
    assert st.may_advance("Starting", "Recording")
    assert st.may_advance("Recording", "Stopping")
    assert not st.may_advance("Uploading", "Stopping")
    assert not st.may_advance("Completed", "Failed")
    assert not st.may_advance("Failed", "Recording")
    patch = st.status_patch({"phase": "Uploading"}, {"phase": "Stopping", "stopReason": "Requested"},
                            generation=2, now=NOW)
    assert "phase" not in patch and "stopReason" not in patch


def test_running_pod_says_nothing():
    assert judge(pod(phase="Running", state={"running": {"startedAt": CREATED}})) is None
    assert judge(pod(state={"waiting": {"reason": "ContainerCreating"}})) is None
    assert judge(pod(state={"waiting": {"reason": "ErrImagePull", "message": "x"}})) is None  # kubelet retries once


@pytest.mark.parametrize("reason", ["ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"])
def test_image_errors_fail_with_a_hint(reason):
    v = judge(pod(state={"waiting": {"reason": reason, "message": "pull access denied"}}))
    assert (v.phase, v.stop_reason, v.reason) == ("Failed", "Error", "ImagePullFailed")
    assert "reel/recorder:1" in v.message and "REEL_RECORDER_IMAGE" in v.message and "pull access denied" in v.message


def test_missing_secret_config_error():
    v = judge(pod(state={"waiting": {"reason": "CreateContainerConfigError",
                                     "message": 'secret "room-1234" not found'}}))
    assert (v.phase, v.reason) == ("Failed", "SecretNotFound")
    assert 'secret "room-1234" not found' in v.message and "namespace media" in v.message


def test_missing_secret_failed_mount_event():
    events = [{"type": "Normal", "reason": "Scheduled", "message": "ok"},
              {"type": "Warning", "reason": "FailedMount",
               "message": 'MountVolume.SetUp failed for volume "room-credentials" : secret "room-1234" not found'}]
    v = judge(pod(state={"waiting": {"reason": "ContainerCreating"}}), events=events)
    assert (v.phase, v.reason) == ("Failed", "SecretNotFound")
    assert "spec.room.credentialsSecretRef" in v.message and "create the Secret" in v.message
    events = [{"type": "Warning", "reason": "FailedMount",
               "message": 'MountVolume.SetUp failed for volume "storage-credentials" : '
                          "couldn't find key AWS_ACCESS_KEY_ID in Secret media/s3"}]
    v = judge(pod(state={"waiting": {"reason": "ContainerCreating"}}), events=events)
    assert v.reason == "SecretNotFound" and "spec.storage.credentialsSecretRef" in v.message
    assert "AWS_SECRET_ACCESS_KEY" in v.message


def test_unschedulable_and_start_timeout():
    cond = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/1 nodes are available: 1 Insufficient memory."}
    assert judge(pod(conditions=[cond])) is None  # within the start timeout
    v = judge(pod(conditions=[cond]), start_timeout=5)
    assert (v.phase, v.reason) == ("Failed", "Unschedulable") and "Insufficient memory" in v.message
    v = judge(pod(state={"waiting": {"reason": "ContainerCreating"}}), start_timeout=5)
    assert v.reason == "StartTimeout" and "ContainerCreating" in v.message


def test_terminated_with_the_recorders_summary():
    summary = {"phase": "Completed", "stopReason": "NoUsers", "reason": "NoUsers", "message": "room empty for 30 s",
               "recordingId": "01JABC", "manifest": "p/manifest.json"}
    v = judge(pod(phase="Succeeded", state=terminated(0, json.dumps(summary))))
    assert (v.phase, v.stop_reason, v.reason, v.message) == ("Completed", "NoUsers", "NoUsers", "room empty for 30 s")
    assert v.extra == {"recordingId": "01JABC", "manifest": "p/manifest.json"} and v.terminal
    failed = {"phase": "Failed", "stopReason": "Error", "reason": "RoomNotFound", "message": "no room 1234"}
    v = judge(pod(phase="Failed", state=terminated(1, json.dumps(failed), "Error")))
    assert (v.phase, v.stop_reason, v.reason) == ("Failed", "Error", "RoomNotFound")
    requested = {"phase": "BackedUp", "stopReason": "Requested", "reason": "Requested"}
    v = judge(pod(phase="Succeeded", state=terminated(0, json.dumps(requested))), deleting=True)
    assert (v.phase, v.stop_reason) == ("BackedUp", "Deleted")


def test_terminated_without_summary():
    v = judge(pod(phase="Failed", state=terminated(137, "", "OOMKilled")))
    assert (v.phase, v.reason) == ("Failed", "OutOfMemory") and "reel.dev/recorder-resources" in v.message
    v = judge(pod(phase="Failed", state=terminated(137, "", "Error")), stopping=True, grace_seconds=300)
    assert v.reason == "UploadTimeout" and "300 s" in v.message
    v = judge(pod(phase="Failed", state=terminated(3, "Traceback ...\nBoom", "Error")))
    assert v.reason == "RecorderError" and "Boom" in v.message and "code 3" in v.message
    v = judge(pod(phase="Succeeded", state=terminated(0, "some log line")))
    assert v.phase == "Completed"


def test_pod_gone():
    v = judge(pod(phase="Running", state={"running": {}}), gone=True)
    assert (v.phase, v.reason) == ("Failed", "RecorderPodDeleted")
    v = judge(pod(phase="Running", state={"running": {}}), gone=True, deleting=True)
    assert (v.phase, v.stop_reason) == ("Completed", "Deleted")
    v = judge(pod(phase="Failed", reason="Evicted"))
    assert (v.phase, v.reason) == ("Failed", "Evicted")


# -- conditions ----------------------------------------------------------------------------------------------


def conds(patch):
    return {c["type"]: c for c in patch["conditions"]}


def test_conditions_follow_the_phases():
    s = {}
    # as the create handler writes it: the pod was built from generation 1 (acted on by the operator)
    p = st.status_patch(s, {"phase": "Starting", "pod": "reel-rec-s"}, generation=1, now=NOW, acted=1)
    c = conds(p)
    assert set(c) == {"Recording", "Uploaded", "BackedUp", "Reconciling", "Stalled", "Finished", "Ready"}
    assert (c["Ready"]["status"], c["Ready"]["reason"]) == ("False", "Starting")
    assert all(x["observedGeneration"] == 1 and x["lastTransitionTime"] == "2026-11-25T12:00:00Z" for x in c.values())
    assert p["observedGeneration"] == 1 and p["phase"] == "Starting"

    s = {**s, **p, "phase": "Recording", "activeParticipants": 2, "upload": {"segments": 3, "pendingSegments": 1}}
    later = NOW + timedelta(seconds=5)
    p = st.status_patch(s, {}, generation=1, now=later)
    c = conds(p)
    assert (c["Recording"]["status"], c["Recording"]["reason"]) == ("True", "ParticipantsPresent")
    assert (c["Ready"]["status"], c["Ready"]["reason"]) == ("True", "Recording")
    assert c["Ready"]["lastTransitionTime"] == "2026-11-25T12:00:05Z"
    assert c["BackedUp"]["lastTransitionTime"] == "2026-11-25T12:00:00Z"  # unchanged status keeps its time
    assert (c["Uploaded"]["status"], c["Uploaded"]["reason"]) == ("False", "Uploading")
    assert st.transition(s, p) == ("Normal", "Recording", "Recording")

    s = {**s, **p}
    assert st.status_patch(s, {}, generation=1, now=later) == {}  # nothing changed -> no write
    s2 = {**s, "upload": {"segments": 9, "pendingSegments": 2}}
    assert st.status_patch(s2, {}, generation=1, now=later) == {}  # progress alone does not touch conditions

    s = {**s, "phase": "Completed", "stopReason": "NoUsers", "upload": {"segments": 9, "pendingSegments": 0,
                                                                        "location": "primary"}}
    p = st.status_patch(s, {}, generation=1, now=later)
    c = conds(p)
    assert (c["Uploaded"]["status"], c["Uploaded"]["reason"]) == ("True", "AllStored")
    assert (c["Recording"]["status"], c["Recording"]["reason"]) == ("False", "NoUsers")
    assert (c["Ready"]["status"], c["Ready"]["reason"]) == ("True", "Completed")
    assert c["BackedUp"]["status"] == "False"
    assert st.transition(s, p) == ("Normal", "Completed", "Completed: stop reason NoUsers")
    RecordingSessionStatus.model_validate({**s, **p})  # the API model accepts what we write


def test_backed_up_and_failure_reasons():
    s = {"phase": "BackedUp", "upload": {"segments": 2, "location": "mixed"}}
    c = conds(st.status_patch(s, {}, generation=4, now=NOW))
    assert (c["BackedUp"]["status"], c["BackedUp"]["reason"]) == ("True", "BackupUsed")
    assert c["Uploaded"]["status"] == "True" and c["Ready"]["reason"] == "BackedUp"

    p = st.status_patch({"phase": "Recording"}, {"phase": "Failed", "stopReason": "Error", "message": "no such room"},
                        generation=4, now=NOW, reason="RoomNotFound")
    c = conds(p)
    assert (c["Ready"]["status"], c["Ready"]["reason"], c["Ready"]["message"]) == ("False", "RoomNotFound",
                                                                                    "no such room")
    assert c["Recording"]["reason"] == "RoomNotFound"
    assert st.transition({"phase": "Recording"}, p) == ("Warning", "RoomNotFound", "Failed: no such room")
    after = {"phase": "Recording", **p}
    assert st.failure_reason(after) == "RoomNotFound"
    assert st.status_patch(after, {}, generation=4, now=NOW) == {}  # the detailed reason is kept
    # the recorder wrote Failed itself (no detailed reason yet); the operator refines it from the pod
    s = {"phase": "Failed", "stopReason": "Error", "message": "x"}
    s.update(st.status_patch(s, {}, generation=4, now=NOW))
    assert conds(s)["Ready"]["reason"] == "Error"
    p = st.status_patch(s, {"phase": "Failed"}, generation=4, now=NOW, reason="StorageFailed")
    assert conds(p)["Ready"]["reason"] == "StorageFailed"


def test_already_recording_status():
    p = st.status_patch({}, {"phase": "Failed", "stopReason": "AlreadyRecording", "message": "room busy"},
                        generation=1, now=NOW, reason="AlreadyRecording")
    assert p["stopReason"] == "AlreadyRecording" and conds(p)["Ready"]["reason"] == "AlreadyRecording"
    RecordingSessionStatus.model_validate(p)


# -- first start wins ----------------------------------------------------------------------------------------


def sess(name, created, uid, phase=None, deleting=False):
    meta = {"name": name, "namespace": "media", "creationTimestamp": created, "uid": uid}
    if deleting:
        meta["deletionTimestamp"] = created
    return {"metadata": meta, "status": {"phase": phase} if phase else {}}


def test_first_start_wins_ordering():
    a = sess("a", "2026-11-25T10:00:00Z", "u-a", "Recording")
    b = sess("b", "2026-11-25T10:00:05Z", "u-b")
    c = sess("c", "2026-11-25T10:00:05Z", "u-c")  # same second as b: the uid decides
    assert lock.earlier_active([a, b, c], b) is a
    assert lock.earlier_active([b, c], b) is None and lock.earlier_active([b, c], c) is b
    assert lock.earlier_active([a, b], a) is None
    done = sess("a", "2026-11-25T10:00:00Z", "u-a", "Completed")
    gone = sess("a", "2026-11-25T10:00:00Z", "u-a", "Recording", deleting=True)
    assert lock.earlier_active([done, b], b) is None and lock.earlier_active([gone, b], b) is None
    assert lock.describe({**a, "status": {"recordingId": "01J"}}) == "media/a (recording 01J)"


# -- interruptions: a lost recorder is replaced ---------------------------------------------------------------

SUMMARY_INTERRUPTED = json.dumps({"phase": "Recording", "interrupted": True, "reason": "Interrupted",
                                  "message": "stopped although the session was not", "recordingId": "01JREC",
                                  "manifest": "2026-11-30/1234_101500_01JREC/manifest.json"})
DISRUPTION = {"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI",
              "message": "Eviction API: evicting"}


def lost(p, *, phase="Recording", **kw):
    return irs.judge_interruption(podstate.pod_view(p, gone=kw.pop("gone", False)), phase=phase, **kw)


RUNNING = {"running": {"startedAt": CREATED}}


@pytest.mark.parametrize(("p", "gone", "reason", "words"), [
    (pod(phase="Failed", state=terminated(137, "", "Error")), False, "RecorderCrashed", "code 137"),  # SIGKILL
    (pod(phase="Failed", state=terminated(1, "Traceback ...\nBoom", "Error")), False, "RecorderCrashed", "Boom"),
    (pod(phase="Failed", state=terminated(3, "no JSON", "Error")), False, "RecorderCrashed", "code 3"),
    (pod(phase="Failed", state=terminated(143, "", "Error"), deleting=True), False, "PodDeleted", "killed"),
    (pod(phase="Failed", state=terminated(137, "", "OOMKilled")), False, "OutOfMemory", "memory limit"),
    (pod(phase="Failed", state=terminated(3, SUMMARY_INTERRUPTED, "Error")), False, "Terminated", "SIGTERM"),
    (pod(phase="Failed", state=terminated(3, SUMMARY_INTERRUPTED, "Error"), deleting=True), False, "PodDeleted",
     "stored what it had"),
    (pod(phase="Failed", state=terminated(3, SUMMARY_INTERRUPTED, "Error"), reason="Evicted"), False, "Evicted",
     "pod Evicted"),
    (pod(phase="Failed", state=terminated(143, "", "Error"), conditions=[DISRUPTION]), False, "Evicted",
     "evicted"),
    (pod(phase="Running", state=RUNNING), True, "PodDeleted", "was deleted"),  # kubectl delete pod --force
    (pod(phase="Running", state=RUNNING, deleting=True), True, "PodDeleted", "was deleted"),
    (pod(phase="Running", state=RUNNING, conditions=[{**DISRUPTION, "reason": "PreemptionByScheduler"}]), True,
     "Preempted", "higher priority"),
    (pod(phase="Running", state=RUNNING, conditions=[{**DISRUPTION, "reason": "DeletionByPodGC"}]), True,
     "NodeLost", "node"),
    (pod(phase="Unknown", state=RUNNING), False, "NodeLost", "node"),
    (pod(phase="Running", state=RUNNING, deleting=True, conditions=[
        {**DISRUPTION, "reason": "DeletionByTaintManager"}, {"type": "Ready", "status": "False"}]), False,
     "NodeLost", "node"),
    (pod(phase="Failed", reason="Evicted"), False, "Evicted", "before its recorder started"),
    (pod(state={"waiting": {"reason": "ContainerCreating"}}), True, "PodDeleted", "was deleted"),
])
def test_interruptions(p, gone, reason, words):
    cause = lost(p, gone=gone)
    assert cause is not None and cause.reason == reason and words in cause.message, cause
    assert lost(p, gone=gone, phase="Starting") == cause  # the recorder need not have reported yet
    assert lost(p, gone=gone, phase="Paused") == cause
    # the session's own stop or deletion, or its end, is never an interruption
    assert lost(p, gone=gone, stopping=True) is None and lost(p, gone=gone, deleting=True) is None
    assert lost(p, gone=gone, phase="Completed") is None and lost(p, gone=gone, phase="Failed") is None


def test_an_interrupted_summary_hands_on_what_was_recorded():
    cause = lost(pod(phase="Failed", state=terminated(3, SUMMARY_INTERRUPTED, "Error")))
    assert cause.extra == {"recordingId": "01JREC", "manifest": "2026-11-30/1234_101500_01JREC/manifest.json"}


@pytest.mark.parametrize(("p", "gone"), [
    (pod(phase="Running", state=RUNNING), False),  # recording
    (pod(phase="Running", state=RUNNING, deleting=True, conditions=[DISRUPTION]), False),  # storing, exits soon
    (pod(phase="Running", state=RUNNING, deleting=True, conditions=[  # a NoExecute taint on a live node
        {**DISRUPTION, "reason": "DeletionByTaintManager"}, {"type": "Ready", "status": "True"}]), False),
    (pod(phase="Succeeded", state=terminated(0, json.dumps({"phase": "Completed", "stopReason": "NoUsers"}))),
     False),
    (pod(phase="Failed", state=terminated(1, json.dumps({"phase": "Failed", "reason": "RoomNotFound"}), "Error")),
     False),
    (pod(phase="Succeeded", state=terminated(0, "some log line")), False),
    (pod(state={"waiting": {"reason": "ImagePullBackOff", "message": "denied"}}), False),
    (pod(state={"waiting": {"reason": "CreateContainerConfigError", "message": 'secret "x" not found'}}), False),
    (pod(conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]), False),
    (pod(phase="Failed", reason="DeadlineExceeded"), False),
])
def test_not_interruptions(p, gone):
    """A final report, exit 0, a recorder still running, a pod that cannot start: judge_pod decides, as before."""
    assert lost(p, gone=gone) is None


def _unhealthy(uid="u-1", count=1, message="Liveness probe failed: HTTP probe failed with statuscode: 503"):
    return {"reason": "Unhealthy", "type": "Warning", "message": message, "count": count,
            "involvedObject": {"kind": "Pod", "name": "reel-rec-s", "uid": uid,
                               "fieldPath": "spec.containers{recorder}"}}


def test_liveness_failures_are_counted_from_this_pods_unhealthy_events():
    timeout = "Liveness probe failed: Get \"http://10.244.0.7:8086/healthz\": context deadline exceeded"
    events = [_unhealthy(count=2), _unhealthy(message=timeout),
              _unhealthy(uid="u-0", count=5),  # an earlier pod of the same name
              _unhealthy(message="Readiness probe failed: nope"),
              {"reason": "Killing", "message": "Stopping container recorder", "involvedObject": {"uid": "u-1"}}]
    assert irs.liveness_failures(events, "u-1") == 3
    assert irs.liveness_failures(events, "u-2") == 0 and irs.liveness_failures([], "u-1") == 0


@pytest.mark.parametrize(("p", "words"), [
    # the loop never came back: SIGKILL after the grace period
    (pod(phase="Failed", state=terminated(137, "", "Error")), "exited with code 137"),
    # it came back in time for the SIGTERM: stored what it had, exit 3
    (pod(phase="Failed", state=terminated(3, SUMMARY_INTERRUPTED, "Error")), "stored what it had"),
])
def test_a_liveness_kill_is_recorder_unresponsive(p, words):
    """restartPolicy Never: the kubelet stops the pod like a deletion that leaves no trace on it; the pod's
    Events (failureThreshold liveness failures) are what tell."""
    view = podstate.pod_view(p)
    assert irs.may_be_unresponsive(view)
    cause = lost(p, liveness_failures=3)
    assert cause.reason == "RecorderUnresponsive" and "liveness probe failed 3 times" in cause.message, cause
    assert words in cause.message
    assert lost(p, liveness_failures=2).reason in ("RecorderCrashed", "Terminated")  # fewer: not the probe
    assert lost(p, liveness_failures=3, stopping=True) is None
    assert lost(p, liveness_failures=3, phase="Completed") is None
    if "interrupted" in p["status"]["containerStatuses"][0]["state"]["terminated"]["message"]:
        assert cause.extra["recordingId"] == "01JREC"  # what it recorded is taken over


@pytest.mark.parametrize("p", [
    pod(phase="Failed", state=terminated(137, "", "OOMKilled")),  # the kernel, not the kubelet
    pod(phase="Failed", state=terminated(1, "Traceback ...\nBoom", "Error")),  # its own crash
    pod(phase="Failed", state=terminated(143, "", "Error"), deleting=True),  # deleted
    pod(phase="Failed", state=terminated(3, SUMMARY_INTERRUPTED, "Error"), reason="Evicted"),  # evicted
    pod(phase="Succeeded", state=terminated(0, json.dumps({"phase": "Completed", "stopReason": "NoUsers"}))),
    pod(phase="Running", state=RUNNING),
])
def test_other_ends_are_not_taken_for_a_liveness_kill(p):
    assert not irs.may_be_unresponsive(podstate.pod_view(p))
    cause = lost(p, liveness_failures=9)
    assert cause is None or cause.reason != "RecorderUnresponsive"


def test_interrupted_summary_while_stopping_ends_the_session():
    p = pod(phase="Failed", state=terminated(3, SUMMARY_INTERRUPTED, "Error"))
    v = judge(p, stopping=True)
    assert (v.phase, v.stop_reason, v.reason) == ("Completed", "Requested", "Interrupted") and v.extra["recordingId"]
    assert judge(p, deleting=True).stop_reason == "Deleted"


def test_pod_view_reads_restart_node_disruption_and_ready():
    p = pod(phase="Running", state=RUNNING, conditions=[DISRUPTION, {"type": "Ready", "status": "True"}])
    p["metadata"]["annotations"] = {"reel.dev/restart": "2"}
    p["spec"]["nodeName"] = "node-1"
    v = podstate.pod_view(p)
    assert (v.restart, v.node, v.disruption, v.ready) == (2, "node-1", "EvictionByEvictionAPI", True)
    v = podstate.pod_view(pod())
    assert (v.restart, v.node, v.disruption, v.ready) == (0, None, None, None)
    p["metadata"]["annotations"] = {"reel.dev/restart": "x"}
    assert podstate.pod_view(p).restart == 0


def test_restart_budget_and_backoff():
    assert [irs.restart_delay(n) for n in (1, 2, 3, 4, 5, 6, 20)] == [2, 4, 8, 16, 30, 30, 30]
    assert irs.max_restarts({}) == 3 == irs.max_restarts(None) == irs.max_restarts({"recording": {}})
    assert irs.max_restarts({"recording": {"maxRestarts": 0}}) == 0
    assert irs.max_restarts({"recording": {"maxRestarts": 7}}) == 7


def test_resume_request():
    status = {"recordingId": "01JREC", "manifest": "2026-11-30/1234_101500_01JREC/manifest.json",
              "interruption": {"since": "2026-11-30T10:20:00Z", "reason": "Evicted", "message": "x"}}
    assert irs.resume_request(status) == {"recordingId": "01JREC", "prefix": "2026-11-30/1234_101500_01JREC/",
                                         "reason": "Evicted", "interruptedAt": "2026-11-30T10:20:00Z"}
    assert irs.resume_request({**status, "manifest": "manifest.json"})["prefix"] == ""
    assert irs.resume_request({**status, "manifest": "a/b/other.json"})["prefix"] == "a/b/"
    assert irs.resume_request({k: v for k, v in status.items() if k != "manifest"}) is None  # nothing recorded
    assert irs.resume_request({k: v for k, v in status.items() if k != "recordingId"}) is None
    no_gap = irs.resume_request({"recordingId": "r", "manifest": "p/manifest.json"}, now=NOW)
    assert no_gap["interruptedAt"] == "2026-11-25T12:00:00Z" and no_gap["reason"] == "RecorderCrashed"


def test_conditions_and_events_of_an_interruption():
    s = {"phase": "Recording", "recordingId": "01JREC", "activeParticipants": 2}
    s.update(st.status_patch(s, {}, generation=1, now=NOW))
    assert conds(s)["Ready"]["status"] == "True"
    cause = irs.Interruption("Evicted", "the recorder pod reel-rec-s was evicted")
    gap = irs.interruption_record(cause, restarts=1, limit=3, now=NOW)
    assert gap == {"since": "2026-11-25T12:00:00Z", "reason": "Evicted",
                   "message": "the recorder pod reel-rec-s was evicted; resuming (1 of 3)"}
    p = st.status_patch(s, {"restarts": 1, "interruption": gap}, generation=1, now=NOW)
    c = conds(p)
    assert (c["Recording"]["status"], c["Recording"]["reason"]) == ("False", "Interrupted")
    assert (c["Ready"]["status"], c["Ready"]["reason"], c["Ready"]["message"]) == ("False", "Interrupted",
                                                                                    gap["message"])
    assert st.transition(s, p) == ("Warning", "Interrupted", gap["message"])
    s = {**s, **p}
    RecordingSessionStatus.model_validate(s)  # the API model accepts what we write
    assert st.failure_reason(s) == "Failed"  # Interrupted is not a failure reason
    # a second loss before the replacement reported: Ready unchanged, but a new Event
    gap2 = irs.interruption_record(irs.Interruption("OutOfMemory", "oom"), restarts=2, limit=3, now=NOW)
    p2 = st.status_patch(s, {"restarts": 2, "interruption": gap2}, generation=1, now=NOW)
    assert st.transition(s, p2) == ("Warning", "Interrupted", "oom; resuming (2 of 3)")

    # the replacement reports: not yet over while its start time is before the loss (a late report of the old)
    assert not irs.interruption_over({**s, "recorderStartedAt": "2026-11-25T11:00:00Z"})
    assert not irs.interruption_over({**s, "phase": "Starting", "recorderStartedAt": "2026-11-25T12:00:05Z"})
    assert not irs.interruption_over({**s, "interruption": None, "recorderStartedAt": "2026-11-25T12:00:05Z"})
    s = {**s, "recorderStartedAt": "2026-11-25T12:00:05.250Z"}
    assert irs.interruption_over(s) and irs.interruption_over({**s, "phase": "Paused"})
    p = st.status_patch(s, {"interruption": None}, generation=1, now=NOW)
    assert p["interruption"] is None and conds(p)["Ready"]["status"] == "True"
    event = st.transition(s, p)
    assert event[:2] == ("Normal", "Resumed") and "01JREC" in event[2] and "Evicted" in event[2]

    # a final phase ends the interruption in the same patch
    p = st.status_patch(s, {"phase": "Failed", "stopReason": "Error", "message": "x"}, generation=1, now=NOW,
                        reason="TooManyRestarts")
    assert p["interruption"] is None and conds(p)["Ready"]["reason"] == "TooManyRestarts"
    assert st.transition(s, p) == ("Warning", "TooManyRestarts", "Failed: x")
    assert irs.stopped_while_interrupted(s).startswith("stopped while a lost recorder was being replaced (Evicted)")
    assert irs.stopped_while_interrupted({"phase": "Recording"}) is None


def test_a_sigkill_without_oomkilled_names_memory_as_the_usual_cause():
    """The runtime reported OOMKilled for one OOM-killed recorder and exit 137 "Error" for its replacement (kind,
    2026-12-01): a 137 says what usually sends it; other codes, and OOMKilled itself, say nothing of the kind."""
    killed = pod(phase="Failed", state=terminated(137, "", "Error"))
    cause = lost(killed)
    assert cause.reason == "RecorderCrashed" and "exited with code 137" in cause.message, cause
    assert "OOM killer" in cause.message and "reel.dev/recorder-resources" in cause.message, cause
    assert "OOM killer" not in lost(pod(phase="Failed", state=terminated(1, "", "Error"))).message
    assert st.sigkill_hint(137, "OOMKilled") == "" and st.sigkill_hint(143, "Error") == ""
    verdict = judge(killed)
    assert "OOM killer" in verdict.message, verdict
