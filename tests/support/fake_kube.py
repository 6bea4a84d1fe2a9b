"""An in-memory stand-in of the part of the Kubernetes API the operator's handlers call (``reel_operator.kube.Kube``'s
methods, same names and results): sessions with resourceVersions and status conflicts on demand, the objects a start
creates, pods and their deletion (graceful: marked; grace 0: gone), Leases, recorder accounts made ahead. Used by the
operator's unit tests (tests/unit/test_operator_*.py and the others that import it); no cluster, no threads of its
own."""

from __future__ import annotations

import copy
import itertools

import kopf

from reel_operator import lock, podstate
from reel_operator.handlers import common, create
from reel_operator.kube import Conflict
from reel_operator.settings import Settings

_rv = itertools.count(1)


def next_resource_version() -> str:
    """A resourceVersion no object of any FakeKube has had yet."""
    return str(next(_rv))


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
                             "resourceVersion": next_resource_version(),
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
            s["metadata"]["resourceVersion"] = next_resource_version()
            raise Conflict("changed")
        if resource_version and resource_version != s["metadata"]["resourceVersion"]:
            raise Conflict("changed")
        s["status"] = {**(s.get("status") or {}), **status}
        s["metadata"]["resourceVersion"] = next_resource_version()
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
        body["metadata"]["resourceVersion"] = next_resource_version()
        body["metadata"]["uid"] = f"uid-{key[2]}"
        self.objects[key] = body
        return copy.deepcopy(body), True

    def get_pod(self, ns, name):
        p = self.objects.get(("Pod", ns, name))
        return copy.deepcopy(p) if p else None

    def get_role_binding(self, ns, name):
        b = self.objects.get(("RoleBinding", ns, name))
        return copy.deepcopy(b) if b else None

    def delete(self, kind, ns, name, uid=None):
        return self.objects.pop((kind, ns, name), None) is not None

    # recorder accounts made ahead (accounts.py)
    def list_service_accounts(self, ns, selector):
        wanted = dict(pair.split("=") for pair in selector.split(","))
        return [copy.deepcopy(o) for (kind, n, _), o in self.objects.items() if kind == "ServiceAccount" and n == ns
                and all((o["metadata"].get("labels") or {}).get(k) == v for k, v in wanted.items())]

    def list_recorder_pods(self, ns):
        return [copy.deepcopy(o) for (kind, n, _), o in self.objects.items() if kind == "Pod" and n == ns]

    def patch_service_account(self, ns, name, patch):
        account = self.objects.get(("ServiceAccount", ns, name))
        if account is None:
            return None
        labels = account["metadata"].setdefault("labels", {})
        for key, value in patch["metadata"].get("labels", {}).items():
            if value is None:
                labels.pop(key, None)
            else:
                labels[key] = value
        if "ownerReferences" in patch["metadata"]:
            account["metadata"]["ownerReferences"] = patch["metadata"]["ownerReferences"]
        return copy.deepcopy(account)

    def delete_pod(self, ns, name, grace_seconds=None, uid=None):
        pod = self.objects.get(("Pod", ns, name))
        if pod is None or (uid is not None and pod["metadata"].get("uid") != uid):  # uid precondition: 409
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
        body["metadata"]["resourceVersion"] = next_resource_version()
        self.objects[key] = body
        return body

    def delete_lease(self, ns, name, resource_version=None):
        self.objects.pop(("Lease", ns, name), None)


def set_pod_state(ctx, name, state, phase="Running", **pod_status):
    """Give session ``name``'s recorder pod (namespace media) a container state and phase -> a copy of the pod."""
    pod = ctx.kube.objects[("Pod", "media", f"reel-rec-{name}")]
    pod["status"] = {"phase": phase, "containerStatuses": [{"name": "recorder", "state": state}], **pod_status}
    return copy.deepcopy(pod)


class CountingKube(FakeKube):
    """Records the reads (session, pod, pod events) in ``reads``: what a handler read before it acted."""

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


def counting_ctx(monkeypatch) -> common.Context:
    """A Context over a CountingKube (kopf.event silenced): the ``ctx`` of test_operator_at_scale.py and
    test_operator_event_loop.py."""
    monkeypatch.setattr(kopf, "event", lambda obj, type, reason, message: None)
    return common.Context(kube=CountingKube(), settings=Settings(start_timeout_seconds=60,
                                                                allow_ambient_credentials=True))


def started(ctx, name="a") -> tuple[dict, podstate.SessionHint]:
    """Session ``name`` created and started (reads forgotten) -> the session as read after and its hint."""
    create.start(ctx, ctx.kube.add_session(name))
    ctx.kube.reads.clear()
    session = ctx.kube.get_session("media", name)
    ctx.kube.reads.clear()
    return session, podstate.session_hint(session)


def pod(ctx, name="a") -> dict:
    """A copy of session ``name``'s recorder pod."""
    return copy.deepcopy(ctx.kube.objects[("Pod", "media", f"reel-rec-{name}")])


class PatchCountingKube(CountingKube):
    """Also counts the session label patches and records the kinds created, in order."""

    def __init__(self):
        super().__init__()
        self.label_patches = 0
        self.created: list[str] = []

    def patch_session(self, ns, name, patch):
        self.label_patches += 1
        return super().patch_session(ns, name, patch)

    def create(self, body):
        self.created.append(body["kind"])
        return super().create(body)


class IndexedKube(PatchCountingKube):
    """Records the order of the requests and refuses any list: with the index the room check lists nothing."""

    def __init__(self):
        super().__init__()
        self.deleted: list[tuple[str, str]] = []

    def list_sessions(self, selector, namespace=None):
        raise AssertionError("the room check listed sessions although it had the index")

    def delete(self, kind, ns, name, uid=None):
        self.deleted.append((kind, name))
        return self.objects.pop((kind, ns, name), None) is not None


def rooms_index(kube) -> dict:
    """main.py's index ``rooms`` as kopf would hold it for every session the fake API has."""
    index: dict = {}
    for body in kube.sessions.values():
        for key, claim in lock.claim_of(body).items():
            index.setdefault(key, []).append(claim)
    return index
