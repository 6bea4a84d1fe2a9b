"""The operator's shortcuts for many sessions (issue 18, benchmarks/operator_scale.py): pod events that change
nothing do not read the session, the start timer does not read a pod it knows runs; and whatever a stale view
of the session would hide is still acted on. Plus the benchmark's own pure pieces (request kinds, percentiles)."""

from __future__ import annotations

import copy
import dataclasses
import sys
from pathlib import Path

import kopf
import pytest
from tests.support.fake_kube import (
    FakeKube,
    IndexedKube,
    PatchCountingKube,
    counting_ctx,
    pod,
    rooms_index,
    set_pod_state,
    started,
)

from reel_operator import names, podstate
from reel_operator.handlers import common, create, pods, session_events, stop
from reel_operator.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import counted_operator
import operator_scale


@pytest.fixture
def ctx(monkeypatch):
    return counting_ctx(monkeypatch)


# -- podstate.uneventful (pure) --------------------------------------------------------------------------------

HINT = podstate.SessionHint(uid="u", phase="Starting", pod="reel-rec-a")


@pytest.mark.parametrize(("view", "hint", "quiet"), [
    (podstate.PodView(name="reel-rec-a", phase="Pending"), HINT, True),  # waiting to be scheduled
    (podstate.PodView(name="reel-rec-a", phase="Running", running=True), HINT, True),  # runs, already named
    (podstate.PodView(name="reel-rec-a", phase="Running", running=True),
     podstate.SessionHint(uid="u", phase="Starting"), False),  # the session does not name its pod yet
    (podstate.PodView(name="reel-rec-a", phase="Pending", waiting_reason="ContainerCreating"), HINT, False),
    (podstate.PodView(name="reel-rec-a", phase="Pending", unschedulable="0/1 nodes"), HINT, False),
    (podstate.PodView(name="reel-rec-a", phase="Failed", running=True, terminated={"exitCode": 1}), HINT, False),
    (podstate.PodView(name="reel-rec-a", phase="Running", running=True, deleting=True), HINT, False),
    (podstate.PodView(name="reel-rec-a", gone=True), HINT, False),
    (podstate.PodView(name="reel-rec-a", phase="Unknown", running=True), HINT, False),  # node lost
    (podstate.PodView(name="reel-rec-a", phase="Running", running=True, disruption="EvictionByEvictionAPI"), HINT,
     False),
    (podstate.PodView(name="reel-rec-a", phase="Running", running=True, restart=1), HINT, False),
    (podstate.PodView(name="reel-rec-a", phase="Pending"), None, False),  # session not seen yet
    (podstate.PodView(name="reel-rec-a", phase="Pending"), podstate.SessionHint(uid="other", phase="Starting"),
     False),  # another session of the same name
    (podstate.PodView(name="reel-rec-a", phase="Pending"), podstate.SessionHint(uid="u", phase="Completed"), False),
    (podstate.PodView(name="reel-rec-a", phase="Pending"), podstate.SessionHint(uid="u", phase="Starting",
                                                                               stopping=True), False),
    (podstate.PodView(name="reel-rec-a", phase="Pending"), podstate.SessionHint(uid="u", phase="Starting",
                                                                               deleting=True), False),
    (podstate.PodView(name="reel-rec-a", phase="Pending"), podstate.SessionHint(uid="u", phase="Recording",
                                                                               interrupted=True), False),
])
def test_uneventful_only_when_nothing_can_change(view, hint, quiet):
    assert podstate.uneventful(view, hint, "u") is quiet


RUNNING = podstate.PodView(name="reel-rec-a", phase="Running", running=True)
STOPPING = podstate.SessionHint(uid="u", phase="Recording", pod="reel-rec-a", stopping=True)


@pytest.mark.parametrize(("view", "hint", "flags", "quiet"), [
    # a first pod that runs before the session's Starting write shows: this process's start names it
    (RUNNING, podstate.SessionHint(uid="u", phase=None), {"started_here": True}, True),
    (RUNNING, podstate.SessionHint(uid="u", phase="Pending"), {"started_here": True}, True),
    (RUNNING, podstate.SessionHint(uid="u", phase=None), {}, False),  # not started here: read the session
    (RUNNING, podstate.SessionHint(uid="u", phase="Starting", pod="reel-rec-old"), {"started_here": True}, False),
    (podstate.PodView(name="reel-rec-a", phase="Running", running=True, restart=1),
     podstate.SessionHint(uid="u", phase="Recording", restarts=1), {"started_here": True}, False),  # a replacement
    (podstate.PodView(name="reel-rec-a", phase="Running", running=True, waiting_reason="CrashLoopBackOff"),
     podstate.SessionHint(uid="u", phase=None), {"started_here": True}, False),
    # the deletion this process sent for the stop, the recorder still running: nothing new
    (podstate.PodView(name="reel-rec-a", phase="Running", running=True, deleting=True), STOPPING,
     {"stopped_here": True}, True),
    (podstate.PodView(name="reel-rec-a", phase="Running", running=True, deleting=True), STOPPING, {}, False),
    (podstate.PodView(name="reel-rec-a", phase="Running", running=True, deleting=True), HINT,
     {"stopped_here": True}, False),  # the hint shows no stop: someone else deleted it
    (podstate.PodView(name="reel-rec-a", phase="Running", running=True, deleting=True,
                      disruption="EvictionByEvictionAPI"), STOPPING, {"stopped_here": True}, False),
    (podstate.PodView(name="reel-rec-a", phase="Failed", running=True, deleting=True, terminated={"exitCode": 0}),
     STOPPING, {"stopped_here": True}, False),  # the exit: judged
    (podstate.PodView(name="reel-rec-a", gone=True), STOPPING, {"stopped_here": True}, False),  # gone: judged
    (podstate.PodView(name="reel-rec-a", phase="Pending", deleting=True), STOPPING, {"stopped_here": True}, False),
])
def test_what_this_process_did_makes_more_events_uneventful(view, hint, flags, quiet):
    assert podstate.uneventful(view, hint, "u", **flags) is quiet


def test_a_first_pod_running_before_the_starting_write_shows_reads_nothing(ctx):
    body = ctx.kube.add_session("a")
    hint = podstate.session_hint(body)  # as the index saw the first event: no phase
    create.start(ctx, body)
    running = set_pod_state(ctx, "a", {"running": {}})
    assert pods.quiet(running, hint=hint, ctx=ctx)
    assert not pods.quiet(running, hint=hint)  # without what this process did: the session is read


def test_the_deletion_sent_for_a_stop_reads_nothing_and_its_end_is_judged(ctx):
    session, _ = started(ctx)
    set_pod_state(ctx, "a", {"running": {}})
    session["spec"]["stop"] = True
    stop.stop(ctx, session)
    assert "uid-a" in ctx.stop_sent
    deleting = pod(ctx)
    assert deleting["metadata"].get("deletionTimestamp")
    hint = podstate.session_hint(session)
    assert pods.quiet(deleting, hint=hint, ctx=ctx)
    assert not pods.quiet(deleting, gone=True, hint=hint, ctx=ctx)  # its removal: Completed is written


def test_session_hint_reads_the_session():
    body = {"metadata": {"uid": "u", "deletionTimestamp": "2026-12-01T00:00:00Z"}, "spec": {"stop": True},
            "status": {"phase": "Stopping", "restarts": 2, "pod": "reel-rec-a", "interruption": {"since": "x"}}}
    assert podstate.session_hint(body) == podstate.SessionHint(uid="u", phase="Stopping", restarts=2, pod="reel-rec-a",
                                                               stopping=True, deleting=True, interrupted=True)


# -- the handlers with a hint ------------------------------------------------------------------------------------

def test_a_pending_pod_event_reads_nothing(ctx):
    _, hint = started(ctx)
    pods.observe(ctx, pod(ctx), hint=hint)
    assert ctx.kube.reads == []


def test_a_running_pod_the_session_names_reads_nothing(ctx):
    _, hint = started(ctx)
    pods.observe(ctx, set_pod_state(ctx, "a", {"running": {}}), hint=hint)
    assert ctx.kube.reads == []


def test_without_a_hint_the_session_is_read(ctx):
    started(ctx)
    pods.observe(ctx, set_pod_state(ctx, "a", {"running": {}}))
    assert ctx.kube.reads == [("session", "a")]


def test_an_exit_is_judged_even_with_a_stale_hint(ctx):
    """The hint says Starting, the pod says the recorder crashed: the session is read and the loss handled."""
    _, hint = started(ctx)
    pods.observe(ctx, set_pod_state(ctx, "a", {"terminated": {"exitCode": 1, "reason": "Error"}}, "Failed"),
                 hint=hint)
    assert ("session", "a") in ctx.kube.reads
    st = ctx.kube.sessions[("media", "a")]["status"]
    assert st["restarts"] == 1 and st["interruption"]["reason"] == "RecorderCrashed"


def test_a_gone_pod_is_judged_even_with_a_stale_hint(ctx):
    """Stopped meanwhile (the hint has not seen spec.stop): the fresh session decides, Completed not a loss."""
    _, hint = started(ctx)
    gone = set_pod_state(ctx, "a", {"running": {}})
    ctx.kube.sessions[("media", "a")]["spec"]["stop"] = True
    pods.observe(ctx, gone, gone=True, hint=hint)
    st = ctx.kube.sessions[("media", "a")]["status"]
    assert (st["phase"], st["stopReason"]) == ("Completed", "Requested") and not st.get("interruption")


def test_start_timer_skips_a_pod_known_to_run(ctx):
    session, _ = started(ctx)
    set_pod_state(ctx, "a", {"running": {}})
    session_events.check_start(ctx, session, pod_running=True)
    assert ctx.kube.reads == []
    session_events.check_start(ctx, session)  # not known: the pod is read
    assert ctx.kube.reads == [("pod", "reel-rec-a")]


def test_start_timer_reads_a_pod_the_session_does_not_name_yet(ctx):
    session, _ = started(ctx)
    set_pod_state(ctx, "a", {"running": {}})
    session["status"].pop("pod")
    session_events.check_start(ctx, session, pod_running=True)
    assert ("pod", "reel-rec-a") in ctx.kube.reads


# -- the benchmark's pure pieces ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("method", "url", "kind"), [
    ("GET", "https://h/apis/reel.dev/v1alpha1/namespaces/n/recordingsessions/a", "get recordingsessions"),
    ("PATCH", "https://h/apis/reel.dev/v1alpha1/namespaces/n/recordingsessions/a/status",
     "patch recordingsessions/status"),
    ("GET", "https://h/apis/reel.dev/v1alpha1/recordingsessions?labelSelector=x", "list recordingsessions"),
    ("GET", "https://h/api/v1/namespaces/n/pods?watch=true&labelSelector=x", "watch pods"),
    ("POST", "https://h/api/v1/namespaces/n/pods", "create pods"),
    ("DELETE", "https://h/api/v1/namespaces/n/pods/reel-rec-a", "delete pods"),
    ("GET", "https://h/api/v1/namespaces/n", "get namespaces"),
    ("PUT", "https://h/apis/coordination.k8s.io/v1/namespaces/n/leases/l", "update leases"),
])
def test_request_kind(method, url, kind):
    assert counted_operator.request_kind(method, url) == kind


def test_percentiles_and_count_differences():
    xs = [float(i) for i in range(1, 101)]
    assert (operator_scale.percentile(xs, 50), operator_scale.percentile(xs, 99)) == (50.0, 99.0)
    assert operator_scale.percentile([3.0], 99) == 3.0
    assert operator_scale.diff_counts({"get pods": 5, "list x": 1}, {"get pods": 2, "list x": 1}) == {"get pods": 3}


def test_stop_breakdown_splits_stop_to_gone_at_the_handler_and_its_deletion():
    """The first stop-handler run and pod deletion after the stop count (the trace holds the start's calls too);
    a session without a run or without its pod gone is left out."""
    r = {"_stopped": {"n/a": 100.0, "n/b": 100.0, "n/c": 100.0}, "_pod_gone": {"n/a": 102.0, "n/b": 101.0}}
    trace = {"n/a": [["kube delete_pod", 5.0, 5.1],  # another stop's, long before this one: not this one's
                     ["stop-handler", 100.5, 101.0], ["kube delete_pod", 100.6, 100.8],
                     ["stop-handler", 101.2, 101.3]],  # kopf ran it again on an older event
             "n/b": [["stop-handler", 100.1, 100.2]],  # no deletion traced: left out
             "n/c": [["stop-handler", 100.1, 100.2], ["kube delete_pod", 100.1, 100.2]]}  # never gone: left out
    out = operator_scale.stop_breakdown(r, trace)
    assert out["sessions"] == 1
    assert {k: out[k]["p50"] for k in ("total", "to_handler", "handler", "delete", "gone", "stop_runs")} == {
        "total": 2.0, "to_handler": 0.5, "handler": 0.3, "delete": 0.2, "gone": 1.2, "stop_runs": 2.0}
    assert operator_scale.stop_breakdown({}, trace) == {}


def test_a_second_create_on_an_older_event_does_nothing(ctx):
    """kopf may run the create handler again on the event from before its own patch (a lagging watch): the
    session this process started is not started again, with no API call."""
    body = ctx.kube.add_session("a")
    create.start(ctx, copy.deepcopy(body))
    ctx.kube.reads.clear()
    created = dict(ctx.kube.objects)
    create.start(ctx, body)  # the older event: no status yet
    assert ctx.kube.reads == [] and ctx.kube.objects == created


# -- the create path's round trips (issue 18: apply -> pod) --------------------------------------------------------

def labelled(ctx, body: dict) -> dict:
    """The session as a create handler run before left it: labelled with its room key."""
    key = names.room_key(common.parse(body))
    ctx.kube.sessions[("media", body["metadata"]["name"])]["metadata"].setdefault("labels", {})[
        "reel.dev/room-key"] = key
    return ctx.kube.get_session("media", body["metadata"]["name"])


def test_a_labelled_session_gets_its_pod_without_a_patch_or_a_read_before_it():
    kube = PatchCountingKube()
    c = common.Context(kube=kube, settings=Settings(allow_ambient_credentials=True))
    body = labelled(c, kube.add_session("a"))
    kube.reads.clear()
    create.start(c, body)
    assert kube.label_patches == 0 and kube.reads == []
    assert kube.created == ["Lease", "ServiceAccount", "Role", "RoleBinding", "Pod"]
    st = kube.sessions[("media", "a")]["status"]
    assert (st["phase"], st["pod"]) == ("Starting", "reel-rec-a")


def test_a_new_session_is_labelled_and_its_status_written_from_the_patch_answer():
    """No read of the session on the create path: the label patch answers with the session's new
    resourceVersion, which the status write (Starting) carries."""
    kube = PatchCountingKube()
    c = common.Context(kube=kube, settings=Settings(allow_ambient_credentials=True))
    create.start(c, kube.add_session("a"))
    assert kube.label_patches == 1 and kube.reads == []
    assert kube.sessions[("media", "a")]["status"]["phase"] == "Starting"


def test_the_recorder_is_created_two_at_a_time_and_checked_all_the_same(monkeypatch):
    """With an executor (main.py): ServiceAccount and Role at once, then RoleBinding and Pod at once (a binding
    needs its Role to exist, a pod its ServiceAccount); one left by an earlier session of the same name still stops
    the start before the pod, as one after the other did."""
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setattr(kopf, "event", lambda obj, type, reason, message: None)
    kube = PatchCountingKube()
    with ThreadPoolExecutor(max_workers=4) as io:
        c = common.Context(kube=kube, settings=Settings(allow_ambient_credentials=True), io=io)
        create.start(c, labelled(c, kube.add_session("a")))
        assert sorted(kube.created) == sorted(["Lease", "ServiceAccount", "Role", "RoleBinding", "Pod"])
        assert set(kube.created[1:3]) == {"ServiceAccount", "Role"} and set(kube.created[3:]) == {"RoleBinding", "Pod"}

        body = labelled(c, kube.add_session("b", room=2))
        kube.objects[("Role", "media", "reel-rec-b")] = {"kind": "Role", "metadata": {
            "name": "reel-rec-b", "namespace": "media", "ownerReferences": [{"uid": "uid-of-an-earlier-b"}]}}
        with pytest.raises(kopf.TemporaryError, match="Role reel-rec-b belongs to an earlier session"):
            create.start(c, body)
        assert ("Pod", "media", "reel-rec-b") not in kube.objects


# -- the stop path and the start timer ---------------------------------------------------------------------------

def test_a_second_stop_on_an_older_event_does_nothing(ctx):
    """kopf may run the stop handler again on the event from before its own patch: the pod was told already."""
    session, _ = started(ctx)
    set_pod_state(ctx, "a", {"running": {}})
    session = ctx.kube.get_session("media", "a")
    session["spec"]["stop"] = True
    ctx.kube.reads.clear()
    stop.stop(ctx, copy.deepcopy(session))
    assert ctx.kube.sessions[("media", "a")]["status"]["phase"] == "Stopping"
    assert [name for name, _ in ctx.kube.deleted_pods] == ["reel-rec-a"]
    ctx.kube.reads.clear()
    stop.stop(ctx, session)  # the older event (Starting)
    assert ctx.kube.reads == [] and len(ctx.kube.deleted_pods) == 1


def test_the_stop_is_written_from_the_body_it_came_with(ctx):
    """One read (the pod) before the delete, none after it: the status write uses the event's resourceVersion;
    when the recorder wrote meanwhile the write is refused and computed again from a fresh read."""
    started(ctx)
    set_pod_state(ctx, "a", {"running": {}})
    session = ctx.kube.get_session("media", "a")
    session["spec"]["stop"] = True
    ctx.kube.reads.clear()
    stop.stop(ctx, session)
    assert ctx.kube.reads == [("pod", "reel-rec-a")]

    create.start(ctx, ctx.kube.add_session("b", room=2))
    set_pod_state(ctx, "b", {"running": {}})
    session = ctx.kube.get_session("media", "b")
    session["spec"]["stop"] = True
    ctx.kube.conflicts = 1  # the recorder reports between our read and our write
    stop.stop(ctx, session)
    st = ctx.kube.sessions[("media", "b")]["status"]
    assert (st["phase"], st["activeParticipants"]) == ("Stopping", 3)


def ref(ctx, name="a") -> podstate.PodRef:
    """Session ``name``'s pod as main.py's index ``recorder_pod_refs`` holds it."""
    p = pod(ctx, name)
    return podstate.PodRef(uid=p["metadata"]["uid"], owner_uid=f"uid-{name}", view=podstate.pod_view(p))


def test_a_stop_deletes_the_pod_the_watch_showed_without_reading_it(ctx):
    session, _ = started(ctx)
    set_pod_state(ctx, "a", {"running": {}})
    session["spec"]["stop"] = True
    stop.stop(ctx, session, pod=ref(ctx))
    assert ctx.kube.reads == []
    assert ctx.kube.deleted_pods == [("reel-rec-a", None)]  # gracefully: the recorder closes and uploads
    assert "uid-a" in ctx.stop_sent and ctx.kube.sessions[("media", "a")]["status"]["phase"] == "Stopping"


def test_a_stop_of_a_pod_whose_recorder_never_started_deletes_it_at_once(ctx):
    session, _ = started(ctx)  # pending: no container ran
    session["spec"]["stop"] = True
    stop.stop(ctx, session, pod=ref(ctx))
    assert ctx.kube.reads == [] and ctx.kube.deleted_pods == [("reel-rec-a", 0)]


def test_a_stop_with_a_stale_view_of_the_pod_reads_it_and_deletes_the_one_there(ctx):
    """The watch showed a pod that is gone since and replaced by another of the same name (a replacement
    recorder): the uid precondition refuses the deletion of the old one, the pod is read, the current one goes."""
    session, _ = started(ctx)
    old = ref(ctx)
    ctx.kube.objects[("Pod", "media", "reel-rec-a")]["metadata"]["uid"] = "uid-replacement"
    set_pod_state(ctx, "a", {"running": {}})
    session["spec"]["stop"] = True
    stop.stop(ctx, session, pod=old)
    assert ctx.kube.reads == [("pod", "reel-rec-a")]
    assert ctx.kube.deleted_pods == [("reel-rec-a", None)] and "uid-a" in ctx.stop_sent


def test_a_stop_with_a_view_of_a_gone_pod_reads_and_completes(ctx):
    session, _ = started(ctx)
    gone = ref(ctx)
    del ctx.kube.objects[("Pod", "media", "reel-rec-a")]
    session["spec"]["stop"] = True
    stop.stop(ctx, session, pod=gone)
    assert ctx.kube.reads[0] == ("pod", "reel-rec-a") and ctx.kube.deleted_pods == []
    assert ctx.kube.sessions[("media", "a")]["status"]["phase"] == "Completed"


def test_a_stop_does_not_trust_a_view_of_a_lost_recorders_pod_or_anothers(ctx):
    """An earlier restart number than the session's (a lost recorder's pod) or another session's pod: read and
    judged as before (pods.current_pod), never deleted from the view."""
    session, _ = started(ctx)
    set_pod_state(ctx, "a", {"running": {}})
    session["spec"]["stop"] = True
    session["status"]["restarts"] = 1
    stop.stop(ctx, dict(session), pod=ref(ctx))  # the view's pod has restart number 0
    assert ctx.kube.reads[0] == ("pod", "reel-rec-a")  # read, and force-removed as a lost recorder's
    assert ctx.kube.deleted_pods == [("reel-rec-a", 0)]
    create.start(ctx, ctx.kube.add_session("b", room=2))
    set_pod_state(ctx, "b", {"running": {}})
    b = ctx.kube.get_session("media", "b")
    b["spec"]["stop"] = True
    ctx.kube.reads.clear()
    stop.stop(ctx, b, pod=podstate.PodRef(uid=pod(ctx, "b")["metadata"]["uid"], owner_uid="uid-a",
                                           view=ref(ctx, "b").view))
    assert ctx.kube.reads == [("pod", "reel-rec-b")]  # read: the view named another owner
    assert ctx.kube.deleted_pods[-1] == ("reel-rec-b", None)


def test_pod_ref_runs_for_the_current_recorder_only():
    view = podstate.PodView(name="reel-rec-a", phase="Running", running=True, restart=1)
    ref_ = podstate.PodRef(uid="p", owner_uid="u", view=view)
    assert ref_.runs_for("u", 1)
    assert not ref_.runs_for("u", 0) and not ref_.runs_for("other", 1)
    for changed in ({"running": False}, {"terminated": {"exitCode": 0}}, {"deleting": True}):
        assert not podstate.PodRef(uid="p", owner_uid="u", view=dataclasses.replace(view, **changed)).runs_for("u", 1)


@pytest.mark.parametrize(("running", "named", "settled"), [
    (True, True, True), (True, False, False), (False, True, False), (False, False, False)])
def test_start_settled(running, named, settled):
    body = {"metadata": {"name": "a"}, "status": {"phase": "Starting", **({"pod": "reel-rec-a"} if named else {})}}
    assert session_events.start_settled(body, pod_running=running) is settled


class LeaseKube(PatchCountingKube):
    """Leases with resourceVersion preconditions on delete, as the API server has them."""

    def get_lease(self, ns, name):
        self.reads.append(("lease", name))
        return super().get_lease(ns, name)

    def delete_lease(self, ns, name, resource_version=None):
        lease = self.objects.get(("Lease", ns, name))
        if lease is None:
            return True
        if resource_version and lease["metadata"]["resourceVersion"] != resource_version:
            return False
        del self.objects[("Lease", ns, name)]
        return True


def test_the_room_is_released_at_the_version_the_index_showed():
    from reel_operator import lock

    kube = LeaseKube()
    c = common.Context(kube=kube, settings=Settings(allow_ambient_credentials=True))
    create.start(c, labelled(c, kube.add_session("a")))
    (key, lease), = [(k, v) for k, v in kube.objects.items() if k[0] == "Lease"]
    session = common.parse(kube.get_session("media", "a"))
    kube.reads.clear()
    lock.release(kube, session, resource_version="an older version")  # changed since: read, still ours, deleted
    assert kube.reads == [("lease", key[2])] and key not in kube.objects

    kube.objects[key] = lease
    kube.reads.clear()
    lock.release(kube, session, resource_version=lease["metadata"]["resourceVersion"])
    assert kube.reads == [] and key not in kube.objects

    taken = copy.deepcopy(lease)  # another session holds it now
    taken["spec"]["holderIdentity"] = "media/b/uid-b"
    taken["metadata"]["resourceVersion"] = "newer"
    kube.objects[key] = taken
    lock.release(kube, session, resource_version=lease["metadata"]["resourceVersion"])
    assert kube.objects[key] == taken


# -- the room check from the index (main.py's ``rooms``) ---------------------------------------------------------

def test_claim_of_keys_a_session_by_the_room_key_of_its_spec():
    from reel_operator import lock

    kube = FakeKube()
    body = kube.add_session("a")
    (key, claim), = lock.claim_of(body).items()
    assert key == names.room_key(common.parse(body))  # from the spec: no label needed
    assert (claim.namespace, claim.name, claim.uid, claim.active) == ("media", "a", "uid-a", True)
    body["status"] = {"phase": "Completed"}
    assert not lock.claim_of(body)[key].active
    body["spec"]["room"] = {"id": 1}  # no server: our models refuse it, it never starts
    body["metadata"]["generation"] = (body["metadata"].get("generation") or 1) + 1  # as the API server does
    assert lock.claim_of(body) == {}


def test_the_room_key_is_computed_once_per_generation(monkeypatch):
    from reel_operator import lock

    body = FakeKube().add_session("a")
    validated = []
    real = lock.load_session
    monkeypatch.setattr(lock, "load_session", lambda b: validated.append(1) or real(b))
    key = next(iter(lock.claim_of(body)))
    body["status"] = {"phase": "Starting"}  # a status write: same generation, same key
    assert next(iter(lock.claim_of(body))) == key and len(validated) == 1
    body["spec"]["room"]["id"] = 99
    body["metadata"]["generation"] = (body["metadata"].get("generation") or 1) + 1
    assert next(iter(lock.claim_of(body))) != key and len(validated) == 2


def test_with_the_index_the_pod_comes_after_two_round_trips_and_nothing_is_read(monkeypatch):
    """Lease, ServiceAccount and Role at once, then RoleBinding, pod and the room-key label at once; no list, no
    read; Starting written at the resourceVersion the label patch answered."""
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setattr(kopf, "event", lambda obj, type, reason, message: None)
    kube = IndexedKube()
    with ThreadPoolExecutor(max_workers=4) as io:
        c = common.Context(kube=kube, settings=Settings(allow_ambient_credentials=True), io=io)
        body = kube.add_session("a")
        create.start(c, body, rooms=rooms_index(kube))
    assert kube.reads == [] and kube.label_patches == 1
    assert set(kube.created[:3]) == {"Lease", "ServiceAccount", "Role"} and set(kube.created[3:]) == {"RoleBinding",
                                                                                                     "Pod"}
    session = kube.sessions[("media", "a")]
    assert session["metadata"]["labels"][names.LABEL_ROOM_KEY] == names.room_key(common.parse(body))
    assert (session["status"]["phase"], session["status"]["pod"]) == ("Starting", "reel-rec-a")


@pytest.mark.parametrize("io", [False, True])
def test_with_the_index_a_second_session_of_the_room_is_refused_and_touches_nothing(monkeypatch, io):
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setattr(kopf, "event", lambda obj, type, reason, message: None)
    kube = IndexedKube()
    with ThreadPoolExecutor(max_workers=4) as pool:
        c = common.Context(kube=kube, settings=Settings(allow_ambient_credentials=True), io=pool if io else None)
        create.start(c, kube.add_session("a"), rooms=rooms_index(kube))
        b = kube.add_session("b", ns="other")  # another namespace: the lock spans every namespace served
        kube.created.clear()
        kube.reads.clear()
        create.start(c, b, rooms=rooms_index(kube))
    st = kube.sessions[("other", "b")]["status"]
    assert (st["phase"], st["stopReason"]) == ("Failed", "AlreadyRecording") and "media/a" in st["message"]
    assert kube.created == [] and kube.reads[0] == ("session", "a")  # the index's winner read fresh (then the
    # Failed write reads b, as every failure's does)


def test_with_the_index_a_winner_that_ended_meanwhile_does_not_block_the_room(ctx):
    kube = IndexedKube()
    c = common.Context(kube=kube, settings=Settings(allow_ambient_credentials=True))
    create.start(c, kube.add_session("a"), rooms=rooms_index(kube))
    index = rooms_index(kube)  # as the watch showed it: a active
    kube.sessions[("media", "a")]["status"]["phase"] = "Completed"
    kube.objects.pop(("Lease", "media", f"reel-room-{names.room_key(common.parse(kube.get_session('media', 'a')))}"))
    create.start(c, kube.add_session("b"), rooms=index)
    assert kube.sessions[("media", "b")]["status"]["phase"] == "Starting"


def test_with_the_index_a_later_session_never_wins_and_is_not_read(monkeypatch):
    """An earlier session wins even before it started (as with the labels); a later one is not even read."""
    monkeypatch.setattr(kopf, "event", lambda obj, type, reason, message: None)
    kube = IndexedKube()
    c = common.Context(kube=kube, settings=Settings(allow_ambient_credentials=True))
    a, b = kube.add_session("a"), kube.add_session("b")
    index = rooms_index(kube)  # both active, neither started
    kube.reads.clear()
    create.start(c, b, rooms=index)  # b (created later) checks first: a is earlier and active
    assert kube.sessions[("media", "b")]["status"]["stopReason"] == "AlreadyRecording"
    assert kube.reads[0] == ("session", "a") and kube.created == []
    kube.reads.clear()
    create.start(c, a, rooms=index)  # a sees only b, created later: nothing read before its pod
    assert kube.reads == [] and kube.sessions[("media", "a")]["status"]["phase"] == "Starting"


@pytest.mark.parametrize("io", [False, True])
def test_with_the_index_a_race_lost_at_the_lease_deletes_what_it_created(monkeypatch, io):
    """The index did not show the other session yet, the Lease does: the ServiceAccount and Role created beside
    the Lease are deleted again, no RoleBinding, no pod, AlreadyRecording."""
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setattr(kopf, "event", lambda obj, type, reason, message: None)
    kube = IndexedKube()
    with ThreadPoolExecutor(max_workers=4) as pool:
        c = common.Context(kube=kube, settings=Settings(allow_ambient_credentials=True), io=pool if io else None)
        create.start(c, kube.add_session("a"), rooms=rooms_index(kube))
        create.start(c, kube.add_session("b"), rooms={})  # the index has not seen a yet
    assert sorted(kube.deleted) == [("Role", "reel-rec-b"), ("ServiceAccount", "reel-rec-b")]
    assert not [k for k in kube.objects if k[2] == "reel-rec-b"]
    assert kube.sessions[("media", "b")]["status"]["stopReason"] == "AlreadyRecording"
