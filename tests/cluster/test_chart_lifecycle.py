"""Whole recordings with the operator as the chart deploys it (its image, its ServiceAccount, exactly the chart's
RBAC) on the kind cluster, whose API server enables the OwnerReferencesPermissionEnforcement admission plugin
(hack/kind/kind-config.*.yaml), as OpenShift does; a real Janus pod, WebRTC publisher pods, local storage.

- issue 15: a session's whole life under that plugin (the recorder's objects carry ownerReferences with
  blockOwnerDeletion, which needs `recordingsessions/finalizers` update); a session deleted and recreated at once
  under the same name keeps its own recorder identity through the old one's garbage collection.
- issue 20: an edit of maxDurationSeconds while recording: observedGeneration reaches the new generation only once
  the recorder reports it applied it (appliedGeneration), and the recording ends at the new limit.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from contextlib import suppress
from datetime import datetime

import pytest
import yaml
from kubernetes import watch
from kubernetes.client.rest import ApiException

# tests/cluster is on sys.path (pytest's prepend import mode; no __init__.py): the modules pytest collects
from test_chart import CHART, GROUP, OPERATOR_IMAGE, PLURAL, RECORDER_IMAGE, VERSION, helm, image_values, new_namespace
from test_operator import build_images, deploy_janus, room_secret, session_body, start_publisher

pytestmark = pytest.mark.cluster

PLUGIN = "OwnerReferencesPermissionEnforcement"
HOLD = "reel.dev/test-hold"  # a finalizer of this test's, holding objects in their garbage collection
WAITING = "same name; waiting for its garbage collection"  # the operator's message (handlers/create.py)
ROOMS = (1234, 1235, 1236)


class Env:
    def __init__(self, kube, ns: str, watched: str, release: str, janus: str):
        self.kube, self.ns, self.watched, self.release, self.janus = kube, ns, watched, release, janus

    def get(self, name: str) -> dict | None:
        try:
            return self.kube.custom.get_namespaced_custom_object(GROUP, VERSION, self.watched, PLURAL, name)
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def status(self, name: str) -> dict:
        return (self.get(name) or {}).get("status") or {}

    def create(self, body: dict) -> dict:
        return self.kube.custom.create_namespaced_custom_object(GROUP, VERSION, self.watched, PLURAL, body)

    def patch(self, name: str, spec: dict) -> dict:
        return self.kube.custom.patch_namespaced_custom_object(GROUP, VERSION, self.watched, PLURAL, name,
                                                               {"spec": spec})

    def operator_log(self, tail: int = 0) -> str:
        args = ["logs", "-n", self.ns, f"deploy/{self.release}-operator"] + ([f"--tail={tail}"] if tail else [])
        return self.kube.kubectl(*args, check=False).stdout

    def diagnose(self, name: str) -> str:
        rec = self.kube.kubectl("logs", "-n", self.watched, f"reel-rec-{name}", "--tail=30", check=False).stdout
        return f"status: {json.dumps(self.status(name))[:3000]}\noperator:\n{self.operator_log(40)}\nrecorder:\n{rec}"

    def wait(self, wait_for, name: str, predicate, timeout: float, what: str) -> dict:
        try:
            return wait_for(lambda: (lambda s: s if predicate(s) else None)(self.status(name)), timeout, what)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.diagnose(name)}") from None

    def account(self, name: str) -> str:
        """The ServiceAccount the session's RoleBinding names: its own (``reel-rec-<name>``) or one it claimed from
        the operator's accounts made ahead (accountPool)."""
        obj = f"reel-rec-{name}"
        try:
            binding = self.kube.rbac.read_namespaced_role_binding(obj, self.watched)
        except ApiException as e:
            if e.status != 404:
                raise
            return obj
        return next((s.name for s in binding.subjects or [] if s.kind == "ServiceAccount"), obj)

    def identity(self, name: str) -> dict[str, tuple[str, list[dict]]]:
        """kind -> (uid, ownerReferences) of the session's ServiceAccount, Role, RoleBinding and pod (those present)."""
        obj, account = f"reel-rec-{name}", self.account(name)
        reads = {"ServiceAccount": lambda: self.kube.core.read_namespaced_service_account(account, self.watched),
                 "Role": lambda: self.kube.rbac.read_namespaced_role(obj, self.watched),
                 "RoleBinding": lambda: self.kube.rbac.read_namespaced_role_binding(obj, self.watched),
                 "Pod": lambda: self.kube.core.read_namespaced_pod(obj, self.watched)}
        out = {}
        for kind, read in reads.items():
            try:
                meta = read().metadata
            except ApiException as e:
                if e.status == 404:
                    continue
                raise
            out[kind] = (meta.uid, [r.to_dict() for r in meta.owner_references or []])
        return out


def apiserver_admission_plugins(kube) -> set[str]:
    pods = kube.core.list_namespaced_pod("kube-system", label_selector="component=kube-apiserver").items
    args = [a for p in pods for c in p.spec.containers for a in (c.command or []) + (c.args or [])]
    return {name for a in args if a.startswith("--enable-admission-plugins=") for name in a.split("=", 1)[1].split(",")}


@pytest.fixture(scope="module")
def env(kube):
    from tests.support.waiting import wait_for

    build_images("operator", "recorder", "janus", "publisher")
    for f in sorted((CHART / "crds").glob("*.yaml")):
        kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(f))
    kube.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/recordingsessions.reel.dev")
    ns, watched = new_namespace(kube, wait_for, "reel-life-op-"), new_namespace(kube, wait_for, "reel-life-")
    release = f"reel-life-{uuid.uuid4().hex[:4]}"
    try:
        helm(kube, "install", release, str(CHART), "-n", ns, "--wait", "--timeout", "240s",
             "--set", f"watchNamespaces={{{watched}}}",
             *image_values(OPERATOR_IMAGE, "image"), *image_values(RECORDER_IMAGE, "recorder.image"),
             "--set", "recorder.resources.requests.cpu=50m", "--set", "recorder.terminationGracePeriodSeconds=60")
        janus = deploy_janus(kube, watched, ROOMS)
        room_secret(kube, watched)
        yield Env(kube, ns, watched, release, janus)
    finally:
        helm(kube, "uninstall", release, "-n", ns, "--wait", "--timeout", "120s", check=False)
        for name in (watched, ns):
            for s in kube.custom.list_namespaced_custom_object(GROUP, VERSION, name, PLURAL)["items"]:
                kube.custom.patch_namespaced_custom_object(GROUP, VERSION, name, PLURAL, s["metadata"]["name"],
                                                           {"metadata": {"finalizers": None}})
            kube.core.delete_namespace(name)


def test_a_whole_session_with_the_chart_rbac_under_owner_reference_enforcement(kube, env, wait_for):
    if PLUGIN not in apiserver_admission_plugins(kube):
        pytest.skip(f"this cluster's API server does not enable {PLUGIN} (hack/kind/kind-config.*.yaml does)")
    start_publisher(kube, env.watched, env.janus, ROOMS[0], "alice", duration=300)
    created = env.create(session_body("life", env.janus, ROOMS[0]))
    env.wait(wait_for, "life", lambda s: s.get("phase") == "Recording" and s.get("activeParticipants") == 1 and
             (s.get("upload") or {}).get("segments", 0) >= 2, 180, "life recording alice")

    # every object made for the recorder is owned by the session with blockOwnerDeletion: the plugin let the
    # chart's operator set it (it holds recordingsessions/finalizers update)
    ids = env.identity("life")
    assert set(ids) == {"ServiceAccount", "Role", "RoleBinding", "Pod"}, ids
    for kind, (_, refs) in ids.items():
        assert [(r["uid"], r["block_owner_deletion"], r["controller"]) for r in refs] == \
            [(created["metadata"]["uid"], True, True)], (kind, refs)

    # the plugin is really checking: an account without that right is refused the same ownerReference
    sa = "no-finalizers"
    kube.kubectl("create", "serviceaccount", sa, "-n", env.watched)
    kube.kubectl("create", "role", sa, "-n", env.watched, "--verb=create,get", "--resource=pods,configmaps")
    kube.kubectl("create", "rolebinding", sa, "-n", env.watched, f"--role={sa}", f"--serviceaccount={env.watched}:{sa}")
    owned = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owned", "ownerReferences": [{
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "RecordingSession", "name": "life",
        "uid": created["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}]}}
    refused = kube.kubectl("create", "-n", env.watched, "-f", "-", f"--as=system:serviceaccount:{env.watched}:{sa}",
                           input=yaml.safe_dump(owned), check=False)
    assert refused.returncode != 0 and "blockOwnerDeletion" in refused.stderr, refused.stderr
    operator_sa = f"system:serviceaccount:{env.ns}:{env.release}-operator"
    can = kube.kubectl("auth", "can-i", "update", "recordingsessions.reel.dev/life", "--subresource=finalizers",
                       "-n", env.watched, "--as", operator_sa, check=False).stdout.strip()
    assert can == "yes"

    env.patch("life", {"stop": True})
    final = env.wait(wait_for, "life", lambda s: s.get("phase") in ("Completed", "BackedUp", "Failed"), 240,
                     "life to end")
    assert (final["phase"], final.get("stopReason")) == ("Completed", "Requested"), env.diagnose("life")
    assert final["upload"]["pendingSegments"] == 0 and final["upload"]["progress"] == 100, final
    wait_for(lambda: "Pod" not in env.identity("life"), 120, "the recorder pod removed")
    log = env.operator_log()
    assert "Forbidden" not in log and " 403" not in log, [line for line in log.splitlines() if "orbidden" in line][:5]
    kube.core.delete_namespaced_pod("alice", env.watched, grace_period_seconds=0)


class Versions:
    """(generation, appliedGeneration, observedGeneration, phase, Reconciling reason) of every version of a session
    that a watch delivers."""

    def __init__(self, env: Env, name: str):
        self.seen: list[tuple] = []
        self._watch = watch.Watch()
        self._thread = threading.Thread(target=self._run, args=(env, name), daemon=True)
        self._thread.start()
        time.sleep(0.5)

    def _run(self, env: Env, name: str) -> None:
        try:
            for event in self._watch.stream(env.kube.custom.list_namespaced_custom_object, GROUP, VERSION,
                                            env.watched, PLURAL, field_selector=f"metadata.name={name}",
                                            timeout_seconds=600):
                obj = event["object"]
                st = obj.get("status") or {}
                reconciling = next((c for c in st.get("conditions") or [] if c["type"] == "Reconciling"), {})
                self.seen.append((obj["metadata"]["generation"], st.get("appliedGeneration"),
                                  st.get("observedGeneration"), st.get("phase"),
                                  reconciling.get("status"), reconciling.get("reason")))
        except Exception:  # the watch ends when stop() closes it
            pass

    def stop(self) -> None:
        self._watch.stop()


def test_max_duration_edited_while_recording_is_acted_on_once_the_recorder_applied_it(kube, env, wait_for):
    start_publisher(kube, env.watched, env.janus, ROOMS[1], "bob", duration=300)
    env.create(session_body("edit", env.janus, ROOMS[1]))
    st = env.wait(wait_for, "edit", lambda s: s.get("phase") == "Recording" and s.get("activeParticipants") == 1,
                  180, "edit recording bob")
    first = env.get("edit")["metadata"]["generation"]
    st = env.wait(wait_for, "edit", lambda s: s.get("observedGeneration") == first and
                  s.get("appliedGeneration") == first, 30, "generation 1 acted on")
    versions = Versions(env, "edit")
    started = datetime.fromisoformat(st["startedAt"].replace("Z", "+00:00"))
    elapsed = (datetime.now(started.tzinfo) - started).total_seconds()
    limit = int(elapsed) + 20  # not reached yet: the recording goes on, then ends at it
    edited = env.patch("edit", {"recording": {"maxDurationSeconds": limit}})
    second = edited["metadata"]["generation"]
    assert second == first + 1
    t_edit = time.monotonic()
    env.wait(wait_for, "edit", lambda s: s.get("observedGeneration") == second, 30, "the edit acted on")
    acted_after = time.monotonic() - t_edit
    st = env.status("edit")
    assert st["appliedGeneration"] == second and st["phase"] == "Recording", st
    final = env.wait(wait_for, "edit", lambda s: s.get("phase") in ("Completed", "BackedUp", "Failed"), limit + 120,
                     "edit to end at the new limit")
    versions.stop()
    assert (final["phase"], final.get("stopReason")) == ("Completed", "MaxDuration"), env.diagnose("edit")
    assert f"maxDurationSeconds ({limit} s)" in final.get("message", ""), final
    stopped = datetime.fromisoformat(final["stoppedAt"].replace("Z", "+00:00"))
    # startedAt is taken before the room is joined, stoppedAt once every stream is closed
    assert limit - 1 <= (stopped - started).total_seconds() <= limit + 8, (final["startedAt"], final["stoppedAt"])

    # never ahead of the recorder: while it runs, observedGeneration reaches the edit only once it was applied
    running = [v for v in versions.seen if v[0] == second and v[3] in ("Recording", "Stopping", "Uploading")]
    assert running and all(v[2] < second or (v[1] or 0) >= second for v in running), versions.seen
    lagging = [v for v in running if v[2] == first]
    assert final["observedGeneration"] == second
    print(f"\nmaxDurationSeconds edited -> observedGeneration {second}: {acted_after:.1f} s; "
          f"{len(lagging)} version(s) seen before it was acted on, Reconciling/ApplyingSpec in "
          f"{sum(1 for v in lagging if v[5] == 'ApplyingSpec')}")
    kube.core.delete_namespaced_pod("bob", env.watched, grace_period_seconds=0)


def test_a_session_recreated_under_the_same_name_keeps_its_recorder_identity(kube, env, wait_for):
    start_publisher(kube, env.watched, env.janus, ROOMS[2], "carol", duration=300)
    old = env.create(session_body("again", env.janus, ROOMS[2]))
    env.wait(wait_for, "again", lambda s: s.get("phase") == "Recording" and s.get("activeParticipants") == 1, 180,
             "the first 'again' recording")
    old_ids = env.identity("again")
    assert {uid for _, refs in old_ids.values() for uid in (r["uid"] for r in refs)} == {old["metadata"]["uid"]}
    # the old identity's garbage collection is made to last: a finalizer of the test's holds it until released
    obj, hold, old_account = "reel-rec-again", {"metadata": {"finalizers": [HOLD]}}, env.account("again")
    held = [(kube.core.patch_namespaced_service_account, old_account), (kube.rbac.patch_namespaced_role, obj),
            (kube.rbac.patch_namespaced_role_binding, obj)]
    for patch, name in held:
        patch(name, env.watched, hold)

    env.kube.custom.delete_namespaced_custom_object(GROUP, VERSION, env.watched, PLURAL, "again")
    new = None
    t0 = time.monotonic()
    while new is None and time.monotonic() - t0 < 180:  # the name is free once the finalizer let it go
        try:
            new = env.create(session_body("again", env.janus, ROOMS[2]))
        except ApiException as e:
            if e.status != 409:
                raise
            time.sleep(0.2)
    assert new is not None and new["metadata"]["uid"] != old["metadata"]["uid"]
    recreated_after = time.monotonic() - t0

    def collecting() -> bool:  # the old ServiceAccount, Role, RoleBinding: being deleted by the garbage collector
        reads = [(kube.core.read_namespaced_service_account, old_account), (kube.rbac.read_namespaced_role, obj),
                 (kube.rbac.read_namespaced_role_binding, obj)]
        return all(read(name, env.watched).metadata.deletion_timestamp for read, name in reads)
    try:
        wait_for(collecting, 60, "the old identity under garbage collection")
        time.sleep(8)  # the operator handles the new session meanwhile: it must not take the old identity
        assert "Pod" not in env.identity("again"), env.identity("again")
        waits = env.operator_log().count(WAITING)
        assert waits >= 1, env.operator_log(40)
    finally:
        for patch, name in held:
            with suppress(ApiException):
                patch(name, env.watched, {"metadata": {"finalizers": None}})
    env.wait(wait_for, "again", lambda s: s.get("phase") == "Recording" and s.get("activeParticipants") == 1, 180,
             "the second 'again' recording")

    def ours() -> dict | None:
        ids = env.identity("again")
        if set(ids) != {"ServiceAccount", "Role", "RoleBinding", "Pod"}:
            return None
        return ids if all([r["uid"] for r in refs] == [new["metadata"]["uid"]] for _, refs in ids.values()) else None
    ids = wait_for(ours, 30, "the new session's own identity")
    assert not {uid for uid, _ in ids.values()} & {uid for uid, _ in old_ids.values()}, (ids, old_ids)
    time.sleep(15)  # the old session's garbage collection is long over: nothing of the new one went with it
    assert ours() == ids, env.identity("again")
    beat = env.status("again").get("heartbeatAt")
    wait_for(lambda: env.status("again").get("heartbeatAt") != beat, 30, "the recorder still reporting")

    env.patch("again", {"stop": True})
    final = env.wait(wait_for, "again", lambda s: s.get("phase") in ("Completed", "BackedUp", "Failed"), 240,
                     "the second 'again' to end")
    assert (final["phase"], final.get("stopReason")) == ("Completed", "Requested"), env.diagnose("again")
    assert final["upload"]["progress"] == 100 and final.get("manifest"), final
    waits = env.operator_log().count(WAITING)
    print(f"\nsession deleted -> same name created again: {recreated_after:.1f} s; the operator waited "
          f"{waits} time(s) for the old session's identity to be collected")
    kube.core.delete_namespaced_pod("carol", env.watched, grace_period_seconds=0)
