"""The operator's shortcuts for many sessions (issue 18, benchmarks/operator_scale.py): pod events that change
nothing do not read the session, the start timer does not read a pod it knows runs; and whatever a stale view
of the session would hide is still acted on. Plus the benchmark's own pure pieces (request kinds, percentiles)."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import kopf
import pytest
from tests.unit.test_operator_handlers import FakeKube, set_pod_state

from reel_operator import podstate
from reel_operator.handlers import common, create, pods, session_events
from reel_operator.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import counted_operator
import operator_scale


class CountingKube(FakeKube):
    def __init__(self):
        super().__init__()
        self.reads: list[tuple[str, str]] = []

    def get_session(self, ns, name):
        self.reads.append(("session", name))
        return super().get_session(ns, name)

    def get_pod(self, ns, name):
        self.reads.append(("pod", name))
        return super().get_pod(ns, name)

    def pod_events(self, ns, name):
        self.reads.append(("events", name))
        return super().pod_events(ns, name)


@pytest.fixture
def ctx(monkeypatch):
    monkeypatch.setattr(kopf, "event", lambda obj, type, reason, message: None)
    return common.Context(kube=CountingKube(), settings=Settings(start_timeout_seconds=60,
                                                                allow_ambient_credentials=True))


def started(ctx, name="a") -> tuple[dict, podstate.SessionHint]:
    create.start(ctx, ctx.kube.add_session(name))
    ctx.kube.reads.clear()
    session = ctx.kube.get_session("media", name)
    ctx.kube.reads.clear()
    return session, podstate.session_hint(session)


def pod(ctx, name="a") -> dict:
    return copy.deepcopy(ctx.kube.objects[("Pod", "media", f"reel-rec-{name}")])


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


def test_a_second_create_on_an_older_event_does_nothing(ctx):
    """kopf may run the create handler again on the event from before its own patch (a lagging watch): the
    session this process started is not started again, with no API call."""
    body = ctx.kube.add_session("a")
    create.start(ctx, copy.deepcopy(body))
    ctx.kube.reads.clear()
    created = dict(ctx.kube.objects)
    create.start(ctx, body)  # the older event: no status yet
    assert ctx.kube.reads == [] and ctx.kube.objects == created
