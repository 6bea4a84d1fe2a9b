"""reel_operator handlers against an in-memory stand-in of the Kubernetes API (no cluster): create, stop, pod
events, delete, lock, and status writes that lose nothing to a concurrent writer."""

from __future__ import annotations

import copy
import dataclasses
import json
from datetime import UTC, datetime, timedelta

import kopf
import pytest
from tests.support.fake_kube import FakeKube, next_resource_version, set_pod_state

from reel_operator import interruptions, names
from reel_operator import status as status_mod
from reel_operator.handlers import common, create, delete, pods, session_events, stop
from reel_operator.settings import Settings


@pytest.fixture
def ctx(monkeypatch):
    posted = []
    monkeypatch.setattr(kopf, "event", lambda obj, type, reason, message: posted.append((type, reason, message)))
    # the sessions here name a bucket without credentialsSecretRef (ambient credentials: test_endpoint_policy.py)
    c = common.Context(kube=FakeKube(), settings=Settings(start_timeout_seconds=60, allow_ambient_credentials=True))
    c.posted = posted
    return c


def status(ctx, name):
    return ctx.kube.sessions[("media", name)].get("status") or {}


def ready(ctx, name):
    return next(c for c in status(ctx, name)["conditions"] if c["type"] == "Ready")


def test_create_makes_identity_pod_and_lock(ctx):
    body = ctx.kube.add_session("a")
    create.start(ctx, body)
    kinds = sorted(k for k, ns, n in ctx.kube.objects)
    assert kinds == ["Lease", "Pod", "Role", "RoleBinding", "ServiceAccount"]
    assert status(ctx, "a")["phase"] == "Starting" and status(ctx, "a")["pod"] == "reel-rec-a"
    assert ctx.kube.sessions[("media", "a")]["metadata"]["labels"][names.LABEL_ROOM_KEY]
    assert ("Normal", "Starting", "Starting") in ctx.posted
    create.start(ctx, ctx.kube.get_session("media", "a"))  # resumed / retried: nothing new, no error
    assert sorted(k for k, ns, n in ctx.kube.objects) == kinds


def test_the_room_lock_spans_every_watched_namespace(ctx):
    """Namespaced (watchNamespaces: [media, other]): the lock means what it means cluster-wide, one session per
    room among all the sessions this operator serves, not one per namespace."""
    ctx.settings = dataclasses.replace(ctx.settings, namespaces=("media", "other"))
    create.start(ctx, ctx.kube.add_session("a"))
    create.start(ctx, ctx.kube.add_session("b", ns="other"))
    st = ctx.kube.sessions[("other", "b")]["status"]
    assert (st["phase"], st["stopReason"]) == ("Failed", "AlreadyRecording") and "media/a" in st["message"]
    ctx.settings = dataclasses.replace(ctx.settings, namespaces=("med*", "team-*"))  # REEL_NAMESPACES globs
    create.start(ctx, ctx.kube.add_session("c", ns="team-x"))
    assert ctx.kube.sessions[("team-x", "c")]["status"]["stopReason"] == "AlreadyRecording"


def test_second_session_of_the_room_is_refused(ctx):
    create.start(ctx, ctx.kube.add_session("a"))
    create.start(ctx, ctx.kube.add_session("b"))
    st = status(ctx, "b")
    assert (st["phase"], st["stopReason"]) == ("Failed", "AlreadyRecording")
    assert "media/a" in st["message"] and ready(ctx, "b")["reason"] == "AlreadyRecording"
    assert ("Pod", "media", "reel-rec-b") not in ctx.kube.objects
    assert ("Warning", "AlreadyRecording") in [(t, r) for t, r, _ in ctx.posted]
    create.start(ctx, ctx.kube.add_session("c", room=99))  # another room: fine
    assert status(ctx, "c")["phase"] == "Starting"


def test_room_is_free_again_after_the_end(ctx):
    create.start(ctx, ctx.kube.add_session("a"))
    ctx.kube.sessions[("media", "a")]["status"]["phase"] = "Completed"
    session_events.on_session_change(ctx, ctx.kube.get_session("media", "a"))
    assert not [k for k in ctx.kube.objects if k[0] == "Lease"]
    create.start(ctx, ctx.kube.add_session("b"))
    assert status(ctx, "b")["phase"] == "Starting"


def test_stale_lock_of_a_vanished_session_is_taken_over(ctx):
    create.start(ctx, ctx.kube.add_session("a"))
    del ctx.kube.sessions[("media", "a")]  # gone without releasing (operator down)
    create.start(ctx, ctx.kube.add_session("b"))
    assert status(ctx, "b")["phase"] == "Starting"
    (lease,) = [o for k, o in ctx.kube.objects.items() if k[0] == "Lease"]
    assert lease["spec"]["holderIdentity"] == "media/b/uid-b"


def test_stop_deletes_the_pod_gracefully(ctx):
    create.start(ctx, ctx.kube.add_session("a"))
    set_pod_state(ctx, "a", {"running": {}})
    ctx.kube.sessions[("media", "a")]["status"]["phase"] = "Recording"
    ctx.kube.sessions[("media", "a")]["spec"]["stop"] = True
    stop.stop(ctx, ctx.kube.get_session("media", "a"))
    assert ctx.kube.deleted_pods == [("reel-rec-a", None)]  # the pod's own grace period
    assert (status(ctx, "a")["phase"], status(ctx, "a")["stopReason"]) == ("Stopping", "Requested")
    # the recorder finishes, exits 0 with its summary; the pod is then removed at once
    pod = set_pod_state(ctx, "a", {"terminated": {"exitCode": 0, "message":
                                                  '{"phase": "Completed", "stopReason": "Requested"}'}}, "Succeeded")
    pods.observe(ctx, pod)
    assert (status(ctx, "a")["phase"], status(ctx, "a")["stopReason"]) == ("Completed", "Requested")
    assert ready(ctx, "a")["status"] == "True"


def test_stop_before_the_pod_exists(ctx):
    body = ctx.kube.add_session("a", stop=True)
    create.start(ctx, body)
    assert (status(ctx, "a")["phase"], status(ctx, "a")["stopReason"]) == ("Completed", "Requested")
    assert not ctx.kube.objects


def test_pod_that_cannot_start_fails_the_session_and_goes(ctx):
    create.start(ctx, ctx.kube.add_session("a"))
    pod = set_pod_state(ctx, "a", {"waiting": {"reason": "CreateContainerConfigError",
                                               "message": 'secret "room" not found'}}, "Pending")
    pods.observe(ctx, pod)
    assert status(ctx, "a")["phase"] == "Failed" and ready(ctx, "a")["reason"] == "SecretNotFound"
    assert ctx.kube.deleted_pods == [("reel-rec-a", 0)]
    assert ("Pod", "media", "reel-rec-a") not in ctx.kube.objects


def test_start_timeout_timer_reads_mount_events(ctx):
    create.start(ctx, ctx.kube.add_session("a"))
    pod = set_pod_state(ctx, "a", {"waiting": {"reason": "ContainerCreating"}}, "Pending")
    ctx.kube.events["reel-rec-a"] = [{"type": "Warning", "reason": "FailedMount", "message":
                                      'MountVolume.SetUp failed for volume "room-credentials" : '
                                      'secret "room" not found'}]
    session_events.check_start(ctx, ctx.kube.get_session("media", "a"))
    assert ready(ctx, "a")["reason"] == "SecretNotFound" and pod["metadata"]["name"] not in {
        n for k, ns, n in ctx.kube.objects if k == "Pod"}


def test_unschedulable_pod_fails_after_the_start_timeout(ctx):
    create.start(ctx, ctx.kube.add_session("a"))
    pod = ctx.kube.objects[("Pod", "media", "reel-rec-a")]
    pod["metadata"]["creationTimestamp"] = (datetime.now(UTC) - timedelta(seconds=61)).strftime("%Y-%m-%dT%H:%M:%SZ")
    pod["status"] = {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
                                                         "reason": "Unschedulable", "message": "0/1 nodes"}]}
    session_events.check_start(ctx, ctx.kube.get_session("media", "a"))
    assert ready(ctx, "a")["reason"] == "Unschedulable" and "0/1 nodes" in status(ctx, "a")["message"]


def test_status_write_retries_on_conflict_and_keeps_the_other_writer(ctx):
    body = ctx.kube.add_session("a")
    ctx.kube.conflicts = 2
    common.update_status(ctx, body, {"phase": "Starting"})
    st = status(ctx, "a")
    assert st["phase"] == "Starting" and st["activeParticipants"] == 3  # nothing lost
    ctx.kube.conflicts = 99
    with pytest.raises(kopf.TemporaryError):
        common.update_status(ctx, body, {"phase": "Recording"})


def test_delete_waits_for_the_upload_then_lets_go(ctx):
    create.start(ctx, ctx.kube.add_session("a"))
    set_pod_state(ctx, "a", {"running": {}})
    ctx.kube.sessions[("media", "a")]["status"]["phase"] = "Recording"
    with pytest.raises(kopf.TemporaryError):
        delete.delete(ctx, ctx.kube.get_session("media", "a"), runtime_seconds=0)
    assert ctx.kube.deleted_pods == [("reel-rec-a", None)]
    assert (status(ctx, "a")["phase"], status(ctx, "a")["stopReason"]) == ("Stopping", "Deleted")
    assert not [k for k in ctx.kube.objects if k[0] == "Lease"]  # the room is released at once
    with pytest.raises(kopf.TemporaryError):  # still uploading
        delete.delete(ctx, ctx.kube.get_session("media", "a"), runtime_seconds=10)
    # bounded: after the delete timeout the pod is force-deleted and the finalizer may go
    delete.delete(ctx, ctx.kube.get_session("media", "a"), runtime_seconds=ctx.settings.delete_timeout_seconds + 1)
    assert ctx.kube.deleted_pods[-1] == ("reel-rec-a", 0)
    assert ("Warning", "DeleteTimeout") in [(t, r) for t, r, _ in ctx.posted]


def test_delete_of_a_finished_session_is_immediate(ctx):
    create.start(ctx, ctx.kube.add_session("a"))
    ctx.kube.sessions[("media", "a")]["status"]["phase"] = "Completed"
    delete.delete(ctx, ctx.kube.get_session("media", "a"), runtime_seconds=0)  # no TemporaryError
    assert ("Pod", "media", "reel-rec-a") not in ctx.kube.objects


def test_without_lease_rights_the_label_check_still_refuses_a_second_session(ctx, monkeypatch):
    from kubernetes.client.rest import ApiException

    real_create = ctx.kube.create

    def create_no_leases(body):
        if body["kind"] == "Lease":
            raise ApiException(status=403, reason="Forbidden")
        return real_create(body)
    monkeypatch.setattr(ctx.kube, "create", create_no_leases)
    create.start(ctx, ctx.kube.add_session("a"))
    assert status(ctx, "a")["phase"] == "Starting"
    create.start(ctx, ctx.kube.add_session("b"))
    assert status(ctx, "b")["stopReason"] == "AlreadyRecording"


def test_operator_restart_never_records_a_session_twice(ctx, clock):
    create.start(ctx, ctx.kube.add_session("a"))
    ctx.kube.sessions[("media", "a")]["status"]["phase"] = "Recording"
    create.start(ctx, ctx.kube.get_session("media", "a"))  # resumed, pod still there: nothing to do
    assert status(ctx, "a")["phase"] == "Recording" and not ctx.kube.deleted_pods
    del ctx.kube.objects[("Pod", "media", "reel-rec-a")]  # vanished while the operator was down
    create.start(ctx, ctx.kube.get_session("media", "a"))
    # its recorder was lost: an interruption, not a second recording; the timer starts the one replacement
    assert ("Pod", "media", "reel-rec-a") not in ctx.kube.objects
    assert status(ctx, "a")["restarts"] == 1 and status(ctx, "a")["interruption"]["reason"] == "PodDeleted"
    create.start(ctx, ctx.kube.get_session("media", "a"))  # resumed again meanwhile: still nothing created
    assert ("Pod", "media", "reel-rec-a") not in ctx.kube.objects and status(ctx, "a")["restarts"] == 1
    clock.advance(3)
    session_events.check_interruption(ctx, ctx.kube.get_session("media", "a"))
    assert ctx.kube.get_pod("media", "reel-rec-a")["metadata"]["annotations"]["reel.dev/restart"] == "1"


# -- a lost recorder is replaced by one that continues the recording ------------------------------------------

MANIFEST = "2026-11-30/1234_101500_01JREC/manifest.json"


class Clock:
    def __init__(self):
        self.now = datetime(2026, 11, 30, 10, 20, tzinfo=UTC)

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(status_mod, "now_utc", c)
    return c


def recording(ctx, name="a", **spec):
    """A session whose recorder runs and has reported its recording."""
    create.start(ctx, ctx.kube.add_session(name, **spec))
    set_pod_state(ctx, name, {"running": {}})
    ctx.kube.sessions[("media", name)]["status"].update(
        phase="Recording", recordingId="01JREC", manifest=MANIFEST, recorderStartedAt="2026-11-30T10:15:00Z",
        activeParticipants=2)
    session_events.on_session_change(ctx, ctx.kube.get_session("media", name))
    assert ready(ctx, name)["status"] == "True"
    ctx.posted.clear()


def pod_of(ctx, name="a"):
    return ctx.kube.get_pod("media", f"reel-rec-{name}")


def env_of(pod):
    return {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}


def tick(ctx, name="a"):
    session_events.check_interruption(ctx, ctx.kube.get_session("media", name))


def report(ctx, name="a", **fields):
    """The recorder patches its status; the operator sees the session event."""
    s = ctx.kube.sessions[("media", name)]
    s["status"].update(fields)
    s["metadata"]["resourceVersion"] = next_resource_version()
    session_events.on_session_change(ctx, ctx.kube.get_session("media", name))


def warnings(ctx, reason):
    return [m for t, r, m in ctx.posted if (t, r) == ("Warning", reason)]


def test_a_recorder_killed_after_its_liveness_probe_failed_is_unresponsive(ctx, clock):
    """restartPolicy Never: the kubelet stops the pod (SIGKILL after the grace period: 137, reason Error); only
    the pod's Unhealthy Events say why, and the operator reads them for such an end only."""
    recording(ctx)
    reads = []
    events = ctx.kube.pod_events
    ctx.kube.pod_events = lambda ns, name: reads.append(name) or events(ns, name)
    uid = pod_of(ctx)["metadata"]["uid"]
    ctx.kube.events["reel-rec-a"] = [
        {"reason": "Unhealthy", "type": "Warning", "count": 3, "involvedObject": {"kind": "Pod", "uid": uid},
         "message": 'Liveness probe failed: Get "http://10.244.0.7:8086/healthz": context deadline exceeded'},
        {"reason": "Killing", "type": "Normal", "message": "Stopping container recorder",
         "involvedObject": {"kind": "Pod", "uid": uid}}]
    pods.observe(ctx, set_pod_state(ctx, "a", {"running": {}}))
    assert reads == []  # a running recorder: nothing to read
    pods.observe(ctx, set_pod_state(ctx, "a", {"terminated": {"exitCode": 137, "reason": "Error"}}, "Failed"))
    assert reads == ["reel-rec-a"]
    s = status(ctx, "a")
    assert s["restarts"] == 1 and s["interruption"]["reason"] == "RecorderUnresponsive", s
    (msg,) = warnings(ctx, "Interrupted")
    assert "liveness probe failed 3 times" in msg and msg.endswith("resuming (1 of 3)")
    clock.advance(2.5)
    tick(ctx)
    assert json.loads(env_of(pod_of(ctx))["REEL_RESUME"])["reason"] == "RecorderUnresponsive"


def test_killed_recorder_is_replaced_and_the_recording_resumes(ctx, clock):
    recording(ctx)
    pods.observe(ctx, set_pod_state(ctx, "a", {"terminated": {"exitCode": 137, "reason": "Error"}}, "Failed"))
    s = status(ctx, "a")
    assert s["phase"] == "Recording" and s["restarts"] == 1 and s["activeParticipants"] == 0
    assert s["interruption"]["reason"] == "RecorderCrashed" and s["interruption"]["since"] == "2026-11-30T10:20:00Z"
    assert (ready(ctx, "a")["status"], ready(ctx, "a")["reason"]) == ("False", "Interrupted")
    (msg,) = warnings(ctx, "Interrupted")
    assert "code 137" in msg and msg.endswith("resuming (1 of 3)")
    assert ctx.kube.deleted_pods == [("reel-rec-a", 0)] and pod_of(ctx) is None  # the lost pod goes at once

    clock.advance(1)
    tick(ctx)
    assert pod_of(ctx) is None  # backoff: 2 s before the first replacement
    clock.advance(1.5)
    tick(ctx)
    new = pod_of(ctx)
    assert new["metadata"]["annotations"]["reel.dev/restart"] == "1"
    assert json.loads(env_of(new)["REEL_RESUME"]) == {
        "recordingId": "01JREC", "prefix": "2026-11-30/1234_101500_01JREC/", "reason": "RecorderCrashed",
        "interruptedAt": "2026-11-30T10:20:00Z"}
    tick(ctx)  # the replacement exists: nothing more
    assert len([k for k in ctx.kube.objects if k[0] == "Pod"]) == 1

    # the lost pod's late DELETED event does not count again
    old = copy.deepcopy(new)
    old["metadata"]["annotations"]["reel.dev/restart"] = "0"
    pods.observe(ctx, old, gone=True)
    assert status(ctx, "a")["restarts"] == 1 and len(warnings(ctx, "Interrupted")) == 1

    # the replacement's first report with an old start time (the lost recorder's last flush): still a gap
    report(ctx, recorderStartedAt="2026-11-30T10:15:00Z")
    assert status(ctx, "a")["interruption"]
    report(ctx, recorderStartedAt="2026-11-30T10:20:04Z", activeParticipants=2)
    s = status(ctx, "a")
    assert s["interruption"] is None and s["restarts"] == 1 and ready(ctx, "a")["status"] == "True"
    (resumed,) = [m for t, r, m in ctx.posted if (t, r) == ("Normal", "Resumed")]
    assert "01JREC" in resumed and "RecorderCrashed" in resumed


def test_deleted_pod_is_replaced(ctx, clock):
    recording(ctx)
    pod = pod_of(ctx)
    del ctx.kube.objects[("Pod", "media", "reel-rec-a")]  # kubectl delete pod --force --grace-period=0
    pods.observe(ctx, pod, gone=True)
    assert status(ctx, "a")["interruption"]["reason"] == "PodDeleted" and status(ctx, "a")["restarts"] == 1
    clock.advance(2)
    tick(ctx)
    assert json.loads(env_of(pod_of(ctx))["REEL_RESUME"])["reason"] == "PodDeleted"


def test_gracefully_deleted_pod_is_replaced_once_its_recorder_stored_what_it_had(ctx, clock):
    recording(ctx)
    ctx.kube.objects[("Pod", "media", "reel-rec-a")]["metadata"]["deletionTimestamp"] = "2026-11-30T10:25:00Z"
    pods.observe(ctx, set_pod_state(ctx, "a", {"running": {}}))  # SIGTERM sent, the recorder is storing
    assert "interruption" not in status(ctx, "a") and not ctx.kube.deleted_pods
    summary = {"phase": "Recording", "interrupted": True, "reason": "Interrupted", "message": "x",
               "recordingId": "01JREC", "manifest": MANIFEST}
    pods.observe(ctx, set_pod_state(ctx, "a", {"terminated": {"exitCode": 3, "message": json.dumps(summary)}},
                                    "Failed"))
    assert status(ctx, "a")["interruption"]["reason"] == "PodDeleted"
    assert pod_of(ctx) is None  # removed at once (grace 0): the replacement needs the name


def test_evicted_pod_is_replaced(ctx, clock):
    recording(ctx)
    summary = {"phase": "Recording", "interrupted": True, "reason": "Interrupted", "message": "x"}
    pods.observe(ctx, set_pod_state(ctx, "a", {"terminated": {"exitCode": 3, "message": json.dumps(summary)}},
                                    "Failed", reason="Evicted", message="The node was low on resource: memory."))
    gap = status(ctx, "a")["interruption"]
    assert gap["reason"] == "Evicted" and "low on resource" in gap["message"]
    assert status(ctx, "a")["phase"] == "Recording"  # not Failed/Evicted, not Completed/Requested
    clock.advance(2)
    tick(ctx)
    assert json.loads(env_of(pod_of(ctx))["REEL_RESUME"])["reason"] == "Evicted"


def test_oom_killed_recorder_is_replaced(ctx, clock):
    recording(ctx)
    pods.observe(ctx, set_pod_state(ctx, "a", {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}, "Failed"))
    s = status(ctx, "a")
    assert s["phase"] == "Recording" and s["interruption"]["reason"] == "OutOfMemory"
    assert "memory limit" in warnings(ctx, "Interrupted")[0]


def test_sigterm_without_a_stop_is_an_interruption_and_hands_on_the_recording(ctx, clock):
    """Exit code 3 with the recorder's interrupted JSON (a drain's SIGTERM): recordingId and manifest come
    from it even when the status never got them (the recorder's reports were lost)."""
    create.start(ctx, ctx.kube.add_session("a"))
    set_pod_state(ctx, "a", {"running": {}})
    ctx.kube.sessions[("media", "a")]["status"]["phase"] = "Recording"
    summary = {"phase": "Recording", "interrupted": True, "reason": "Interrupted", "message": "x",
               "recordingId": "01JREC", "manifest": MANIFEST}
    pods.observe(ctx, set_pod_state(ctx, "a", {"terminated": {"exitCode": 3, "message": json.dumps(summary)}},
                                    "Failed"))
    s = status(ctx, "a")
    assert s["interruption"]["reason"] == "Terminated" and (s["recordingId"], s["manifest"]) == ("01JREC", MANIFEST)
    clock.advance(2)
    tick(ctx)
    assert json.loads(env_of(pod_of(ctx))["REEL_RESUME"])["prefix"] == "2026-11-30/1234_101500_01JREC/"


def test_a_recorder_lost_before_it_reported_is_replaced_afresh(ctx, clock):
    create.start(ctx, ctx.kube.add_session("a"))  # Starting: no recordingId, no manifest
    pods.observe(ctx, set_pod_state(ctx, "a", {"terminated": {"exitCode": 1, "message": "Traceback"}}, "Failed"))
    assert status(ctx, "a")["interruption"]["reason"] == "RecorderCrashed"
    clock.advance(2)
    tick(ctx)
    assert "REEL_RESUME" not in env_of(pod_of(ctx))  # nothing was recorded: a fresh start
    assert pod_of(ctx)["metadata"]["annotations"]["reel.dev/restart"] == "1"


def test_lost_node_pod_is_force_deleted_and_replaced(ctx, clock):
    recording(ctx)
    pods.observe(ctx, set_pod_state(ctx, "a", {"running": {}}, "Unknown", reason="NodeLost"))
    assert status(ctx, "a")["interruption"]["reason"] == "NodeLost"
    assert ctx.kube.deleted_pods == [("reel-rec-a", 0)]
    clock.advance(2)
    tick(ctx)
    assert pod_of(ctx)["metadata"]["annotations"]["reel.dev/restart"] == "1"


def test_a_lost_pod_still_terminating_is_forced_out_before_the_replacement(ctx, clock):
    recording(ctx)
    pods.observe(ctx, set_pod_state(ctx, "a", {"terminated": {"exitCode": 137, "reason": "Error"}}, "Failed"))
    # the deletion did not take (say, a finalizer of someone else's): the old pod is still there
    ctx.kube.create(podspec_pod(ctx, restart=0, deleting=True))
    clock.advance(5)
    tick(ctx)
    assert pod_of(ctx) is None and ctx.kube.deleted_pods[-1] == ("reel-rec-a", 0)
    tick(ctx)
    assert pod_of(ctx)["metadata"]["annotations"]["reel.dev/restart"] == "1"


def podspec_pod(ctx, *, restart, deleting=False):
    from reel_operator import podspec
    from reel_operator.handlers.common import parse

    pod = podspec.build_pod(parse(ctx.kube.get_session("media", "a")), ctx.settings, restart=restart)
    if deleting:
        pod["metadata"]["deletionTimestamp"] = "2026-11-30T10:20:00Z"
    return pod


def test_stop_requested_is_not_an_interruption(ctx, clock):
    recording(ctx)
    ctx.kube.sessions[("media", "a")]["spec"]["stop"] = True
    stop.stop(ctx, ctx.kube.get_session("media", "a"))
    pods.observe(ctx, set_pod_state(ctx, "a", {"terminated": {"exitCode": 137, "reason": "Error"}}, "Failed"))
    s = status(ctx, "a")
    assert (s["phase"], ready(ctx, "a")["reason"]) == ("Failed", "UploadTimeout")  # as before
    assert "restarts" not in s and "interruption" not in s
    tick(ctx)
    old = pod_of(ctx)  # the stopped pod, still terminating: no replacement
    assert old["metadata"]["deletionTimestamp"] and old["metadata"]["annotations"]["reel.dev/restart"] == "0"


def test_max_restarts_exhausted_fails_the_session(ctx, clock):
    recording(ctx, recording={"maxRestarts": 1})
    pods.observe(ctx, set_pod_state(ctx, "a", {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}, "Failed"))
    assert warnings(ctx, "Interrupted")[0].endswith("resuming (1 of 1)")
    clock.advance(2)
    tick(ctx)
    pods.observe(ctx, set_pod_state(ctx, "a", {"running": {}}))  # the replacement runs, before it reports
    pods.observe(ctx, set_pod_state(ctx, "a", {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}, "Failed"))
    s = status(ctx, "a")
    assert (s["phase"], s["stopReason"], ready(ctx, "a")["reason"]) == ("Failed", "Error", "TooManyRestarts")
    assert "after 1 restart(s)" in s["message"] and "out of memory" in s["message"]
    assert s["restarts"] == 1 and s["interruption"] is None and s["stoppedAt"]
    assert pod_of(ctx) is None and warnings(ctx, "TooManyRestarts")
    session_events.on_session_change(ctx, ctx.kube.get_session("media", "a"))
    assert not [k for k in ctx.kube.objects if k[0] == "Lease"]  # the room is free again


def test_max_restarts_zero_never_replaces(ctx, clock):
    recording(ctx, recording={"maxRestarts": 0})
    pod = pod_of(ctx)
    del ctx.kube.objects[("Pod", "media", "reel-rec-a")]
    pods.observe(ctx, pod, gone=True)
    assert status(ctx, "a")["phase"] == "Failed" and ready(ctx, "a")["reason"] == "TooManyRestarts"
    assert "PodDeleted" not in status(ctx, "a")["message"] and "was deleted" in status(ctx, "a")["message"]


def test_one_loss_counts_once_even_when_the_status_write_conflicts(ctx, clock):
    recording(ctx)
    ctx.kube.conflicts = 1
    pods.observe(ctx, set_pod_state(ctx, "a", {"terminated": {"exitCode": 137, "reason": "Error"}}, "Failed"))
    assert status(ctx, "a")["restarts"] == 1 and len(warnings(ctx, "Interrupted")) == 1


def test_a_replacement_that_cannot_start_fails_as_before(ctx, clock):
    recording(ctx)
    pods.observe(ctx, set_pod_state(ctx, "a", {"terminated": {"exitCode": 137, "reason": "Error"}}, "Failed"))
    clock.advance(2)
    tick(ctx)
    set_pod_state(ctx, "a", {"waiting": {"reason": "ImagePullBackOff", "message": "denied"}}, "Pending")
    tick(ctx)  # the timer watches the replacement start
    s = status(ctx, "a")
    assert (s["phase"], ready(ctx, "a")["reason"]) == ("Failed", "ImagePullFailed") and s["interruption"] is None
    assert pod_of(ctx) is None


def test_stop_or_delete_during_the_gap_ends_the_session(ctx, clock):
    recording(ctx)
    pods.observe(ctx, set_pod_state(ctx, "a", {"terminated": {"exitCode": 137, "reason": "Error"}}, "Failed"))
    ctx.kube.sessions[("media", "a")]["spec"]["stop"] = True
    tick(ctx)  # a stop meanwhile: no replacement
    stop.stop(ctx, ctx.kube.get_session("media", "a"))
    s = status(ctx, "a")
    assert (s["phase"], s["stopReason"], s["interruption"]) == ("Completed", "Requested", None)
    assert s["message"].startswith("stopped while a lost recorder was being replaced (RecorderCrashed)")
    clock.advance(5)
    tick(ctx)
    assert pod_of(ctx) is None

    recording(ctx, "b", room=99)
    pods.observe(ctx, set_pod_state(ctx, "b", {"terminated": {"exitCode": 137, "reason": "Error"}}, "Failed"))
    ctx.kube.sessions[("media", "b")]["metadata"]["deletionTimestamp"] = "2026-11-30T10:21:00Z"
    delete.delete(ctx, ctx.kube.get_session("media", "b"), runtime_seconds=0)
    s = status(ctx, "b")
    assert (s["phase"], s["stopReason"], s["interruption"]) == ("Completed", "Deleted", None)
    assert "lost recorder" in s["message"]


def test_stop_with_the_replacement_running_stops_it_gracefully(ctx, clock):
    recording(ctx)
    pods.observe(ctx, set_pod_state(ctx, "a", {"terminated": {"exitCode": 137, "reason": "Error"}}, "Failed"))
    clock.advance(2)
    tick(ctx)
    set_pod_state(ctx, "a", {"running": {}})
    ctx.kube.sessions[("media", "a")]["spec"]["stop"] = True
    stop.stop(ctx, ctx.kube.get_session("media", "a"))
    assert ctx.kube.deleted_pods[-1] == ("reel-rec-a", None)  # SIGTERM: the resumed recorder ends the recording
    assert status(ctx, "a")["phase"] == "Stopping"


def test_a_silent_recorder_is_treated_as_lost_and_replaced(ctx, clock):
    recording(ctx, recording={"recorderSilenceSeconds": 30})
    report(ctx, heartbeatAt="2026-11-30T10:19:45Z")  # 15 s before the clock's now
    session_events.check_silence(ctx, ctx.kube.get_session("media", "a"))
    assert not status(ctx, "a").get("interruption") and pod_of(ctx) is not None  # 15 s: still fine
    clock.advance(20)  # 35 s without a report (SIGSTOP, a hung loop, cut off from the API server)
    session_events.check_silence(ctx, ctx.kube.get_session("media", "a"))
    s = status(ctx, "a")
    assert s["interruption"]["reason"] == "RecorderSilent" and s["restarts"] == 1
    assert "35 s" in s["interruption"]["message"]
    assert ctx.kube.deleted_pods == [("reel-rec-a", 0)] and pod_of(ctx) is None  # forced out: it may be frozen
    clock.advance(2)
    tick(ctx)
    assert json.loads(env_of(pod_of(ctx))["REEL_RESUME"])["reason"] == "RecorderSilent"
    session_events.check_silence(ctx, ctx.kube.get_session("media", "a"))  # during the gap: nothing more
    assert status(ctx, "a")["restarts"] == 1


def test_silence_is_judged_only_while_recording_with_a_heartbeat():
    now = datetime(2026, 11, 30, 10, 20, tzinfo=UTC)
    spec = {"recording": {"recorderSilenceSeconds": 60}}
    old = {"phase": "Recording", "heartbeatAt": "2026-11-30T10:18:00Z"}
    assert interruptions.silence(old, spec, now).reason == "RecorderSilent"
    assert interruptions.silence({**old, "heartbeatAt": "2026-11-30T10:19:30Z"}, spec, now) is None
    assert interruptions.silence({**old, "phase": "Paused"}, spec, now) is not None
    for other in ({"phase": "Uploading"}, {"interruption": {"since": "2026-11-30T10:19:00Z"}}, {"heartbeatAt": None}):
        assert interruptions.silence({**old, **other}, spec, now) is None
    assert interruptions.silence(old, {}, now).message.endswith("it is treated as lost")  # default 60 s


def test_a_recreated_session_never_adopts_the_identity_of_the_earlier_one(ctx):
    """Deleted and created again under the same name before the garbage collector removed the first one's
    ServiceAccount, Role, RoleBinding and pod: the new session waits for them to go and makes its own, so their
    collection never takes the new recorder's identity (issue 15)."""
    create.start(ctx, ctx.kube.add_session("a"))
    old = {k: o["metadata"]["ownerReferences"][0]["uid"] for k, o in ctx.kube.objects.items() if k[0] != "Lease"}
    assert set(old.values()) == {"uid-a"}
    ctx.kube.objects.pop(("Lease", "media", next(n for k, _, n in ctx.kube.objects if k == "Lease")))
    del ctx.kube.objects[("Pod", "media", "reel-rec-a")]  # removed at the end of the recording
    old.pop(("Pod", "media", "reel-rec-a"))
    new = ctx.kube.add_session("a")  # the same name, a new object
    ctx.kube.sessions[("media", "a")]["metadata"]["uid"] = new["metadata"]["uid"] = "uid-a-2"
    with pytest.raises(kopf.TemporaryError, match="earlier session"):
        create.start(ctx, new)
    assert {k: o["metadata"]["ownerReferences"][0]["uid"] for k, o in ctx.kube.objects.items()
            if k in old} == old  # nothing of the old one taken over
    for key in old:  # the garbage collector removes what the deleted session owned
        del ctx.kube.objects[key]
    create.start(ctx, ctx.kube.get_session("media", "a"))
    owners = {k: o["metadata"]["ownerReferences"][0]["uid"] for k, o in ctx.kube.objects.items() if k[0] != "Lease"}
    assert set(owners) == {*old, ("Pod", "media", "reel-rec-a")} and set(owners.values()) == {"uid-a-2"}
    assert status(ctx, "a")["phase"] == "Starting"


def test_starting_acknowledges_the_generation_the_pod_was_built_from_and_a_live_edit_waits(ctx):
    """observedGeneration (issue 20): the operator acts on the generation it builds the pod from; a later edit is
    acted on once the recorder reports it applied it (status.appliedGeneration)."""
    create.start(ctx, ctx.kube.add_session("a"))
    assert status(ctx, "a")["observedGeneration"] == 1
    s = ctx.kube.sessions[("media", "a")]
    s["status"].update(phase="Recording", appliedGeneration=1)
    s["metadata"]["generation"] = 2  # spec.recording.maxDurationSeconds edited
    session_events.on_session_change(ctx, ctx.kube.get_session("media", "a"), holds_lock=False)
    assert status(ctx, "a")["observedGeneration"] == 1
    reconciling = next(c for c in status(ctx, "a")["conditions"] if c["type"] == "Reconciling")
    assert (reconciling["status"], reconciling["reason"]) == ("True", "ApplyingSpec")
    s["status"]["appliedGeneration"] = 2  # the recorder's report
    session_events.on_session_change(ctx, ctx.kube.get_session("media", "a"), holds_lock=False)
    assert status(ctx, "a")["observedGeneration"] == 2
    reconciling = next(c for c in status(ctx, "a")["conditions"] if c["type"] == "Reconciling")
    assert reconciling["status"] == "False"
