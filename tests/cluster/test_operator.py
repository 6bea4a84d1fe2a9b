"""The operator on the kind cluster: kopf's KopfRunner runs reel_operator in this process; real recorder pods
(localhost/reel-recorder:dev) record a real Janus (localhost/reel-janus:dev, a pod) with a real WebRTC publisher
(localhost/reel-publisher:dev, a pod). Images are built and loaded by tests/images/build.sh.

The operator watches only the namespaces ``reel-op-*`` this module creates (other tests' sessions are not
touched); the CRD is applied from crds/. Latencies (apply -> pod created, stop -> pod gone) are printed; the
benchmark benchmarks/operator_latency.py measures them repeatedly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException
from tests.support.mergepatch import merge_patch
from tests.support.waiting import wait_for

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
CRD = REPO / "crds" / "reel.dev_recordingsessions.yaml"
BUILD = REPO / "tests" / "images" / "build.sh"
RECORDER_IMAGE = os.environ.get("RECORDER_IMAGE", "localhost/reel-recorder:dev")
JANUS_IMAGE = os.environ.get("JANUS_IMAGE", "localhost/reel-janus:dev")
PUBLISHER_IMAGE = os.environ.get("PUBLISHER_IMAGE", "localhost/reel-publisher:dev")
GROUP, VERSION, PLURAL = "reel.dev", "v1alpha1", "recordingsessions"
ADMIN_KEY, ROOM_SECRET = "adm-key-1", "room-secret-1"
ROOMS = (1234, 1235, 1236, 1237, 1238, 1239)
NS_PREFIX = "reel-op-"


# ---------------------------------------------------------------------------------------------------------
# Helpers (also used by benchmarks/operator_latency.py)
# ---------------------------------------------------------------------------------------------------------


def say(text: str) -> None:
    """Print past kopf's KopfRunner, which captures sys.stdout while the operator runs."""
    sys.__stdout__.write(f"\n{text}\n")
    sys.__stdout__.flush()



def build_images(*names: str) -> None:
    proc = subprocess.run([str(BUILD), *names], capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, f"tests/images/build.sh {' '.join(names)} failed:\n{proc.stderr[-4000:]}"


def apply_crd(kube) -> None:
    kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD))
    kube.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/recordingsessions.reel.dev")


def create_namespace(kube, prefix: str = NS_PREFIX) -> str:
    name = f"{prefix}{uuid.uuid4().hex[:6]}"
    kube.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    wait_for(lambda: any(sa.metadata.name == "default" for sa in kube.core.list_namespaced_service_account(name).items),
             60, f"ServiceAccount {name}/default")
    return name


def delete_namespace(kube, namespace: str) -> None:
    """Delete a test namespace; sessions keep our finalizer when no operator runs any more: drop it first."""
    for s in kube.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]:
        with suppress(ApiException):
            kube.custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, s["metadata"]["name"],
                                                       {"metadata": {"finalizers": None}})
    kube.core.delete_namespace(namespace)


def deploy_janus(kube, namespace: str, rooms=ROOMS) -> str:
    """Janus as a pod behind a headless Service (the recorder resolves Janus's pod IP for RTCP); -> ws URL."""
    labels = {"app": "janus"}
    env = {"JANUS_ROOMS": ",".join(map(str, rooms)), "JANUS_ADMIN_KEY": ADMIN_KEY, "JANUS_ROOM_SECRET": ROOM_SECRET}
    pod = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "janus", "labels": labels},
        "spec": {"containers": [{
            "name": "janus", "image": JANUS_IMAGE, "imagePullPolicy": "Never",
            "env": [{"name": k, "value": v} for k, v in env.items()],
            "ports": [{"containerPort": 8188}],
            "readinessProbe": {"tcpSocket": {"port": 8188}, "periodSeconds": 1},
            "securityContext": {"runAsNonRoot": True, "allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]}, "readOnlyRootFilesystem": True},
            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}]}],
            "volumes": [{"name": "tmp", "emptyDir": {}}],
            "terminationGracePeriodSeconds": 1},
    }
    kube.core.create_namespaced_pod(namespace, pod)
    kube.core.create_namespaced_service(namespace, {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "janus"},
        "spec": {"clusterIP": "None", "selector": labels, "ports": [{"name": "ws", "port": 8188}]}})

    def ready():
        p = kube.core.read_namespaced_pod("janus", namespace)
        return any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
    wait_for(ready, 120, "Janus ready")
    return f"ws://janus.{namespace}.svc:8188"


def start_publisher(kube, namespace: str, server: str, room: int, name: str = "alice", duration: float = 120):
    pod = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 1, "containers": [{
            "name": "publisher", "image": PUBLISHER_IMAGE, "imagePullPolicy": "Never",
            "args": ["--ws", server, "--room", str(room), "--display", name, "--duration", str(duration),
                     "--resolution", "320x240"]}]},
    }
    kube.core.create_namespaced_pod(namespace, pod)


def room_secret(kube, namespace: str, name: str = "room-creds") -> str:
    kube.core.create_namespaced_secret(namespace, client.V1Secret(
        metadata=client.V1ObjectMeta(name=name), string_data={"secret": ROOM_SECRET, "adminKey": ADMIN_KEY}))
    return name


def session_body(name: str, server: str, room: int, *, secret: str | None = "room-creds", **recording) -> dict:
    room_spec = {"server": server, "id": room}
    if secret:
        room_spec["credentialsSecretRef"] = {"name": secret}
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "RecordingSession", "metadata": {"name": name},
            "spec": {"room": room_spec, "recording": {"maxIdleSeconds": 60, "segmentSeconds": 2, **recording},
                     "storage": {"local": {"path": "/recordings"}}}}


def create_session(kube, namespace: str, body: dict) -> dict:
    return kube.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)


def get_session(kube, namespace: str, name: str) -> dict | None:
    try:
        return kube.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    except ApiException as e:
        if e.status == 404:
            return None
        raise


def stop_session(kube, namespace: str, name: str) -> None:
    kube.custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, {"spec": {"stop": True}})


def status(kube, namespace: str, name: str) -> dict:
    return (get_session(kube, namespace, name) or {}).get("status") or {}


def pod_of(kube, namespace: str, session: str):
    try:
        return kube.core.read_namespaced_pod(f"reel-rec-{session}", namespace)
    except ApiException as e:
        if e.status == 404:
            return None
        raise


def wait_phase(kube, namespace: str, name: str, phases, timeout: float = 120) -> dict:
    phases = (phases,) if isinstance(phases, str) else tuple(phases)
    last = {}

    def check():
        nonlocal last
        last = status(kube, namespace, name)
        return last if last.get("phase") in phases else None
    try:
        return wait_for(check, timeout, f"session {namespace}/{name} in {phases}", 0.2)
    except AssertionError as e:
        raise AssertionError(f"{e}; last status: {json.dumps(last)[:2000]}") from None


def session_events(kube, namespace: str, name: str) -> list:
    evs = kube.core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}").items
    return sorted(evs, key=lambda e: (e.first_timestamp or e.event_time or e.metadata.creation_timestamp))


def conditions(st: dict) -> dict:
    return {c["type"]: c for c in st.get("conditions") or []}


@contextmanager
def operator(extra_env: dict | None = None, namespace: str = f"{NS_PREFIX}*"):
    """reel_operator in this process (kopf's KopfRunner), watching the reel-op-* namespaces."""
    from kopf.testing import KopfRunner

    env = {"REEL_RECORDER_IMAGE": RECORDER_IMAGE, "REEL_RECORDER_IMAGE_PULL_POLICY": "Never",
           "REEL_NAMESPACES": f"{NS_PREFIX}*", "REEL_STANDALONE": "true", "REEL_LIVENESS_ENDPOINT": "",
           "REEL_TERMINATION_GRACE_SECONDS": "60", "REEL_START_TIMEOUT_SECONDS": "60",
           "REEL_RECORDER_CPU_LIMIT": "", "REEL_RECORDER_CPU_REQUEST": "50m", **(extra_env or {})}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        with KopfRunner(["run", "--standalone", "--namespace", namespace, "-m", "reel_operator.main"],
                        timeout=60) as runner:
            time.sleep(2)  # initial listing
            yield runner
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class PodTimes:
    """When pods appear and disappear in a namespace, from a watch (for latencies)."""

    def __init__(self, kube, namespace: str):
        self.kube, self.namespace = kube, namespace
        self.created: dict[str, float] = {}
        self.gone: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        time.sleep(0.3)

    def _run(self):
        from kubernetes import watch
        while not self._stop.is_set():
            w = watch.Watch()
            for ev in w.stream(self.kube.core.list_namespaced_pod, self.namespace, timeout_seconds=5):
                now = time.monotonic()
                name = ev["object"].metadata.name
                if ev["type"] == "ADDED":
                    self.created.setdefault(name, now)
                elif ev["type"] == "DELETED":
                    self.gone.setdefault(name, now)
                if self._stop.is_set():
                    w.stop()
                    break

    def close(self):
        self._stop.set()


# ---------------------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def images(kube):
    build_images("recorder", "janus", "publisher")


@pytest.fixture(scope="module")
def crd(kube):
    apply_crd(kube)


@pytest.fixture(scope="module")
def ns(kube, images, crd):
    name = create_namespace(kube)
    yield name
    delete_namespace(kube, name)


@pytest.fixture(scope="module")
def janus(kube, ns):
    server = deploy_janus(kube, ns)
    room_secret(kube, ns)
    return server


@pytest.fixture(scope="module")
def reel(kube, ns, janus):
    with operator() as runner:
        yield runner
    assert runner.exit_code == 0, runner.output[-3000:]


# ---------------------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------------------


def test_record_then_stop(kube, ns, janus, reel):
    start_publisher(kube, ns, janus, ROOMS[0], "alice", duration=300)
    times = PodTimes(kube, ns)
    try:
        t_apply = time.monotonic()
        create_session(kube, ns, session_body("rec-stop", janus, ROOMS[0]))
        wait_for(lambda: "reel-rec-rec-stop" in times.created, 30, "the recorder pod")
        say(f"apply -> pod created: {times.created['reel-rec-rec-stop'] - t_apply:.3f} s")

        # per-session identity: allowed to patch its own session's status, nothing else (the account is the
        # session's own or one made ahead that it claimed: the pod's)
        account = kube.core.read_namespaced_pod("reel-rec-rec-stop", ns).spec.service_account_name
        sa = f"system:serviceaccount:{ns}:{account}"
        can = lambda *a: kube.kubectl("auth", "can-i", "--as", sa, "-n", ns, *a, check=False).stdout.strip()  # noqa: E731
        assert can("patch", "recordingsessions.reel.dev/rec-stop", "--subresource=status") == "yes"
        assert can("patch", "recordingsessions.reel.dev/other", "--subresource=status") == "no"
        assert can("patch", "recordingsessions.reel.dev/rec-stop") == "no"
        assert can("get", "secrets") == "no" and can("create", "pods") == "no"
        # the accounts the operator keeps made ahead in this namespace can do nothing until a session claims one
        free = wait_for(lambda: kube.core.list_namespaced_service_account(
            ns, label_selector="reel.dev/account-pool=free").items, 30, "accounts made ahead")
        unclaimed = f"system:serviceaccount:{ns}:{free[0].metadata.name}"
        assert not free[0].metadata.owner_references and free[0].metadata.name != account
        assert kube.kubectl("auth", "can-i", "--as", unclaimed, "-n", ns, "patch",
                            "recordingsessions.reel.dev/rec-stop", "--subresource=status",
                            check=False).stdout.strip() == "no"

        st = wait_phase(kube, ns, "rec-stop", "Recording", 90)
        assert st["pod"] == "reel-rec-rec-stop" and st["recordingId"]
        wait_for(lambda: (status(kube, ns, "rec-stop").get("upload") or {}).get("segments", 0) >= 2 and
                 status(kube, ns, "rec-stop").get("activeParticipants") == 1, 90, "segments of alice")
        st = status(kube, ns, "rec-stop")
        c = conditions(st)
        assert (c["Recording"]["status"], c["Recording"]["reason"]) == ("True", "ParticipantsPresent")
        assert c["Ready"]["status"] == "True" and c["Ready"]["observedGeneration"] == 1
        assert st["observedGeneration"] == 1
        assert [p["display"] for p in st["participants"]] == ["alice"]

        pod = pod_of(kube, ns, "rec-stop")
        csc = pod.spec.containers[0].security_context
        assert csc.read_only_root_filesystem and csc.run_as_non_root and not csc.allow_privilege_escalation
        assert pod.metadata.owner_references[0].kind == "RecordingSession"

        t_stop = time.monotonic()
        stop_session(kube, ns, "rec-stop")
        wait_for(lambda: "reel-rec-rec-stop" in times.gone, 90, "the recorder pod to go")
        say(f"stop -> pod gone: {times.gone['reel-rec-rec-stop'] - t_stop:.3f} s")
        st = wait_phase(kube, ns, "rec-stop", ("Completed", "BackedUp"), 30)
        assert st["stopReason"] == "Requested"
        assert st["upload"]["pendingSegments"] == 0 and st["upload"]["progress"] == 100
        c = conditions(st)
        assert (c["Uploaded"]["status"], c["Uploaded"]["reason"]) == ("True", "AllStored")
        assert (c["Recording"]["status"], c["Recording"]["reason"]) == ("False", "Requested")
        assert c["Ready"]["status"] == "True"
        assert st["observedGeneration"] == 2  # spec.stop changed the generation
        reasons = [e.reason for e in session_events(kube, ns, "rec-stop")]
        for phase in ("Starting", "Recording", "Stopping", "Completed"):
            assert phase in reasons, reasons
    finally:
        times.close()
        kube.core.delete_namespaced_pod("alice", ns, grace_period_seconds=0)


def test_empty_room_ends_with_no_users(kube, ns, janus, reel):
    create_session(kube, ns, session_body("empty", janus, ROOMS[1], maxIdleSeconds=5))
    st = wait_phase(kube, ns, "empty", ("Completed", "Failed"), 90)
    assert (st["phase"], st["stopReason"]) == ("Completed", "NoUsers"), st
    wait_for(lambda: pod_of(kube, ns, "empty") is None, 30, "the pod of the finished session to be removed")
    # the conditions as the operator computed them for the final status (the snapshot above may be the recorder's
    # final report before the operator's recomputation: a race seen once in three full runs)
    st = wait_phase(kube, ns, "empty", ("Completed",), 30)
    assert conditions(st)["Recording"]["reason"] == "NoUsers"


def test_delete_mid_recording(kube, ns, janus, reel):
    create_session(kube, ns, session_body("deleted", janus, ROOMS[2]))
    wait_phase(kube, ns, "deleted", "Recording", 90)
    assert "reel.dev/finalizer" in get_session(kube, ns, "deleted")["metadata"]["finalizers"]
    t0 = time.monotonic()
    kube.custom.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "deleted")
    wait_for(lambda: get_session(kube, ns, "deleted") is None, 90, "the deleted session to go")
    say(f"delete -> session gone: {time.monotonic() - t0:.3f} s")
    assert pod_of(kube, ns, "deleted") is None or pod_of(kube, ns, "deleted").metadata.deletion_timestamp
    # the garbage collector removes the rest
    wait_for(lambda: not kube.rbac.list_namespaced_role(ns, label_selector="reel.dev/session=deleted").items,
             60, "the session's Role to be collected")


def test_second_session_of_a_room_is_already_recording(kube, ns, janus, reel):
    create_session(kube, ns, session_body("first", janus, ROOMS[3]))
    wait_phase(kube, ns, "first", ("Starting", "Recording"), 60)
    create_session(kube, ns, session_body("second", janus, ROOMS[3]))
    st = wait_phase(kube, ns, "second", "Failed", 60)
    assert st["stopReason"] == "AlreadyRecording"
    assert f"{ns}/first" in st["message"], st["message"]
    assert pod_of(kube, ns, "second") is None
    assert not kube.rbac.list_namespaced_role(ns, label_selector="reel.dev/session=second").items
    assert status(kube, ns, "first")["phase"] in ("Starting", "Recording")
    warnings = [e for e in session_events(kube, ns, "second") if e.type == "Warning"]
    assert any(e.reason == "AlreadyRecording" for e in warnings)
    # first stops -> the room is free: a third session records it
    stop_session(kube, ns, "first")
    wait_phase(kube, ns, "first", ("Completed", "BackedUp"), 60)
    create_session(kube, ns, session_body("third", janus, ROOMS[3]))
    wait_phase(kube, ns, "third", ("Starting", "Recording"), 60)
    stop_session(kube, ns, "third")
    wait_phase(kube, ns, "third", ("Completed", "BackedUp"), 60)


def test_missing_secret_fails_with_a_clear_message(kube, ns, janus, reel):
    create_session(kube, ns, session_body("nosecret", janus, ROOMS[4], secret="no-such-secret"))
    st = wait_phase(kube, ns, "nosecret", "Failed", 90)
    assert st["stopReason"] == "Error"
    assert 'secret "no-such-secret" not found' in st["message"] and "spec.room.credentialsSecretRef" in st["message"]
    assert conditions(st)["Ready"]["reason"] == "SecretNotFound"
    wait_for(lambda: pod_of(kube, ns, "nosecret") is None, 30, "the pod that could not start to be removed")
    warnings = [e for e in session_events(kube, ns, "nosecret") if e.type == "Warning"]
    assert any(e.reason == "SecretNotFound" and "no-such-secret" in e.message for e in warnings)


def test_recorder_error_is_reported(kube, ns, janus, reel):
    create_session(kube, ns, session_body("noroom", janus, 4321))  # no such room on this Janus
    wait_phase(kube, ns, "noroom", "Failed", 90)
    wait_for(lambda: pod_of(kube, ns, "noroom") is None, 30, "the failed pod to be removed")
    st = status(kube, ns, "noroom")
    assert st["stopReason"] == "Error" and "4321" in st["message"]
    # the recorder's detailed reason (from its termination message) is in the conditions
    assert conditions(st)["Ready"]["reason"] == "RoomNotFound", st
    assert any(e.reason == "RoomNotFound" for e in session_events(kube, ns, "noroom"))


# -- the apiserver refuses invalid sessions, with the message the user sees ---------------------------------


INVALID = yaml.safe_load((REPO / "tests" / "data" / "invalid_sessions.yaml").read_text())


@pytest.fixture(scope="module")
def unwatched_ns(kube, crd):
    name = create_namespace(kube, "reel-inv-")  # no operator watches it
    yield name
    kube.core.delete_namespace(name)


@pytest.mark.parametrize("case", INVALID["cases"], ids=[c["name"] for c in INVALID["cases"]])
def test_invalid_session_is_refused(kube, unwatched_ns, case):
    ns = unwatched_ns
    name = f"invalid-{INVALID['cases'].index(case)}"
    validation = case.get("fieldValidation", "Strict")
    try:
        if "old" in case:
            kube.custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL,
                                                        merge_patch(merge_patch(INVALID["base"], case["old"]),
                                                               {"metadata": {"name": name}}))
            with pytest.raises(ApiException) as err:
                kube.custom.replace_namespaced_custom_object(
                    GROUP, VERSION, ns, PLURAL, name,
                    merge_patch(merge_patch(merge_patch(INVALID["base"], case["old"]), case["patch"]),
                           {"metadata": {"name": name, "resourceVersion": get_session(kube, ns, name)["metadata"]
                                         ["resourceVersion"]}}), field_validation=validation)
        else:
            with pytest.raises(ApiException) as err:
                kube.custom.create_namespaced_custom_object(
                    GROUP, VERSION, ns, PLURAL, merge_patch(merge_patch(INVALID["base"], case["patch"]),
                                                       {"metadata": {"name": name}}), field_validation=validation)
    finally:
        with suppress(ApiException):
            kube.custom.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
    assert err.value.status in (400, 422), err.value.body
    body = json.loads(err.value.body)
    shown = body["message"]  # what kubectl prints
    assert case["path"] in shown and case["message"] in shown, shown


# -- two operators at once; a recorder image that cannot be pulled ------------------------------------------


def test_two_operators_never_make_two_pods(kube, images, crd):
    """Worst case: two standalone operators (no peering) act on the same sessions at the same time. The
    deterministic pod name and create-conflict handling leave one pod per session, and the session ends well."""
    ns = create_namespace(kube, "reel-op2-")
    env = {"REEL_NAMESPACES": "reel-op2-*"}
    try:
        server = deploy_janus(kube, ns, rooms=(3000, 3001, 3002))
        room_secret(kube, ns)
        times = PodTimes(kube, ns)
        with operator(env, namespace="reel-op2-*"), operator(env, namespace="reel-op2-*"):
            for i in range(3):
                create_session(kube, ns, session_body(f"twice-{i}", server, 3000 + i))
            for i in range(3):
                wait_phase(kube, ns, f"twice-{i}", "Recording", 90)
                stop_session(kube, ns, f"twice-{i}")
            for i in range(3):
                st = wait_phase(kube, ns, f"twice-{i}", ("Completed", "BackedUp"), 90)
                assert st["stopReason"] == "Requested"
            recorders = sorted(n for n in times.created if n.startswith("reel-rec-"))
            assert recorders == ["reel-rec-twice-0", "reel-rec-twice-1", "reel-rec-twice-2"]
        times.close()
    finally:
        delete_namespace(kube, ns)


def test_image_that_cannot_be_pulled_fails_the_session(kube, images, crd):
    ns = create_namespace(kube, "reel-op3-")
    env = {"REEL_NAMESPACES": "reel-op3-*", "REEL_RECORDER_IMAGE": "localhost/reel-no-such-image:0"}
    try:
        with operator(env, namespace="reel-op3-*"):
            create_session(kube, ns, session_body("nopull", "ws://janus.invalid:8188", 1, secret=None))
            st = wait_phase(kube, ns, "nopull", "Failed", 90)
            assert conditions(st)["Ready"]["reason"] == "ImagePullFailed"
            assert "localhost/reel-no-such-image:0" in st["message"] and "REEL_RECORDER_IMAGE" in st["message"]
            wait_for(lambda: pod_of(kube, ns, "nopull") is None, 30, "the pod to be removed")
    finally:
        delete_namespace(kube, ns)


def test_peering_one_replica_works_and_the_other_takes_over(kube, images, crd, tmp_path):
    """Two `reel-operator` processes (the console command, as from a workstation) with kopf peering: the
    higher priority one works, the other pauses; when the working one exits, the other carries on."""
    kube.kubectl("apply", "-f", str(REPO / "crds" / "kopf.dev_peerings.yaml"))
    kube.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/kopfpeerings.kopf.dev")
    ns = create_namespace(kube, "reel-op4-")
    kube.custom.create_namespaced_custom_object("kopf.dev", "v1", ns, "kopfpeerings", {
        "apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "reel"}})
    log = {prio: tmp_path / f"replica-{prio}.log" for prio in (10, 20)}
    procs = {}
    try:
        server = deploy_janus(kube, ns, rooms=(6000, 6001))
        room_secret(kube, ns)
        for prio in (10, 20):
            env = dict(os.environ, KUBECONFIG=str(kube.kubeconfig), REEL_RECORDER_IMAGE=RECORDER_IMAGE,
                       REEL_RECORDER_IMAGE_PULL_POLICY="Never", REEL_NAMESPACES=ns, REEL_LIVENESS_ENDPOINT="",
                       REEL_PEERING_PRIORITY=str(prio), POD_ID=f"replica-{prio}", REEL_RECORDER_CPU_LIMIT="",
                       REEL_STANDALONE="false", REEL_PEERING_NAME="reel",
                       # replica 10's debug log says when its session watch has stopped (below)
                       REEL_LOG_LEVEL="DEBUG" if prio == 10 else "INFO")
            with open(log[prio], "w") as out:
                procs[prio] = subprocess.Popen([sys.executable, "-m", "reel_operator.run"], env=env, stdout=out,
                                               stderr=subprocess.STDOUT)
        # kopf logs "Pausing operations" when it decides to, and closes the watch streams a moment later: a session
        # created in between was still handled by replica 10 (seen once in make test). Paused means the watch of
        # sessions is blocked ("Pausing the watch-stream", once its stream has ended or before it starts).
        wait_for(lambda: "Pausing the watch-stream for recordingsessions." in log[10].read_text(), 60,
                 "replica 10 to pause its watch of sessions")
        for i in range(2):
            create_session(kube, ns, session_body(f"p{i}", server, 6000 + i))
        for i in range(2):
            wait_phase(kube, ns, f"p{i}", "Recording", 90)
        assert "created recorder pod" in log[20].read_text()
        assert "created recorder pod" not in log[10].read_text()

        procs[20].terminate()
        procs[20].wait(30)
        stop_session(kube, ns, "p0")
        wait_phase(kube, ns, "p0", ("Completed", "BackedUp"), 120)
        kube.custom.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "p1")
        wait_for(lambda: get_session(kube, ns, "p1") is None, 120, "p1 to be deleted by the remaining replica")
        assert "stopping recorder pod reel-rec-p0" in log[10].read_text()
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.terminate()
                p.wait(30)
        delete_namespace(kube, ns)
