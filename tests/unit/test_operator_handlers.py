"""reel_operator handlers against an in-memory stand-in of the Kubernetes API (no cluster): create, stop, pod
events, delete, lock, and status writes that lose nothing to a concurrent writer."""

from __future__ import annotations

import copy
import itertools
from datetime import UTC, datetime, timedelta

import kopf
import pytest

from reel_operator import names
from reel_operator.handlers import common, create, delete, pods, session_events, stop
from reel_operator.kube import Conflict
from reel_operator.settings import Settings

_rv = itertools.count(1)


class FakeKube:
    def __init__(self):
        self.sessions: dict[tuple[str, str], dict] = {}
        self.objects: dict[tuple[str, str, str], dict] = {}  # (kind, ns, name)
        self.deleted_pods: list[tuple[str, int | None]] = []
        self.events: dict[str, list] = {}
        self.conflicts = 0  # make the next N status patches fail with a conflict (someone else wrote)

    # sessions
    def add_session(self, name, room=1234, ns="media", **spec):
        body = {"apiVersion": "reel.dev/v1alpha1", "kind": "RecordingSession",
                "metadata": {"name": name, "namespace": ns, "uid": f"uid-{name}", "generation": 1,
                             "resourceVersion": str(next(_rv)),
                             "creationTimestamp": f"2026-11-25T10:00:{len(self.sessions):02d}Z"},
                "spec": {"room": {"server": "ws://janus:8188", "id": room}, "storage": {"bucket": "rec"}, **spec}}
        self.sessions[(ns, name)] = body
        return copy.deepcopy(body)

    def get_session(self, ns, name):
        s = self.sessions.get((ns, name))
        return copy.deepcopy(s) if s else None

    def patch_session_status(self, ns, name, status, resource_version=None):
        s = self.sessions.get((ns, name))
        if s is None:
            return None
        if self.conflicts:
            self.conflicts -= 1
            s["status"] = {**(s.get("status") or {}), "activeParticipants": 3}  # the recorder wrote meanwhile
            s["metadata"]["resourceVersion"] = str(next(_rv))
            raise Conflict("changed")
        if resource_version and resource_version != s["metadata"]["resourceVersion"]:
            raise Conflict("changed")
        s["status"] = {**(s.get("status") or {}), **status}
        s["metadata"]["resourceVersion"] = str(next(_rv))
        return copy.deepcopy(s)

    def patch_session(self, ns, name, patch):
        s = self.sessions[(ns, name)]
        s["metadata"].setdefault("labels", {}).update(patch["metadata"]["labels"])
        return copy.deepcopy(s)

    def list_sessions(self, selector, namespace=None):
        key, value = selector.split("=")
        return [copy.deepcopy(s) for (ns, _), s in self.sessions.items()
                if (namespace is None or ns == namespace) and s["metadata"].get("labels", {}).get(key) == value]

    # objects
    def create(self, body):
        key = (body["kind"], body["metadata"]["namespace"], body["metadata"]["name"])
        if key in self.objects:
            return copy.deepcopy(self.objects[key]), False
        body = copy.deepcopy(body)
        body["metadata"]["resourceVersion"] = str(next(_rv))
        body["metadata"]["uid"] = f"uid-{key[2]}"
        self.objects[key] = body
        return copy.deepcopy(body), True

    def get_pod(self, ns, name):
        p = self.objects.get(("Pod", ns, name))
        return copy.deepcopy(p) if p else None

    def delete_pod(self, ns, name, grace_seconds=None, uid=None):
        if ("Pod", ns, name) not in self.objects:
            return False
        self.deleted_pods.append((name, grace_seconds))
        if grace_seconds == 0:
            del self.objects[("Pod", ns, name)]
        else:
            self.objects[("Pod", ns, name)]["metadata"]["deletionTimestamp"] = "2026-11-25T10:01:00Z"
        return True

    def pod_events(self, ns, name):
        return self.events.get(name, [])

    def get_lease(self, ns, name):
        lease = self.objects.get(("Lease", ns, name))
        return copy.deepcopy(lease) if lease else None

    def replace_lease(self, body):
        key = ("Lease", body["metadata"]["namespace"], body["metadata"]["name"])
        if self.objects[key]["metadata"]["resourceVersion"] != body["metadata"]["resourceVersion"]:
            return None
        body = copy.deepcopy(body)
        body["metadata"]["resourceVersion"] = str(next(_rv))
        self.objects[key] = body
        return body

    def delete_lease(self, ns, name, resource_version=None):
        self.objects.pop(("Lease", ns, name), None)


@pytest.fixture
def ctx(monkeypatch):
    posted = []
    monkeypatch.setattr(kopf, "event", lambda obj, type, reason, message: posted.append((type, reason, message)))
    c = common.Context(kube=FakeKube(), settings=Settings(start_timeout_seconds=60))
    c.posted = posted
    return c


def status(ctx, name):
    return ctx.kube.sessions[("media", name)].get("status") or {}


def ready(ctx, name):
    return next(c for c in status(ctx, name)["conditions"] if c["type"] == "Ready")


def set_pod_state(ctx, name, state, phase="Running"):
    pod = ctx.kube.objects[("Pod", "media", f"reel-rec-{name}")]
    pod["status"] = {"phase": phase, "containerStatuses": [{"name": "recorder", "state": state}]}
    return copy.deepcopy(pod)


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


def test_operator_restart_never_records_a_session_twice(ctx):
    create.start(ctx, ctx.kube.add_session("a"))
    ctx.kube.sessions[("media", "a")]["status"]["phase"] = "Recording"
    create.start(ctx, ctx.kube.get_session("media", "a"))  # resumed, pod still there: nothing to do
    assert status(ctx, "a")["phase"] == "Recording"
    del ctx.kube.objects[("Pod", "media", "reel-rec-a")]  # vanished while the operator was down
    create.start(ctx, ctx.kube.get_session("media", "a"))
    assert ("Pod", "media", "reel-rec-a") not in ctx.kube.objects
    assert status(ctx, "a")["phase"] == "Failed" and ready(ctx, "a")["reason"] == "RecorderPodDeleted"
