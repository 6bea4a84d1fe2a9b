"""The Helm chart charts/reel on the kind cluster: lint, values.schema.json refusing bad values, every rendering
accepted by the apiserver (server-side dry run), and a real install whose operator (the image built here)
serves a namespace with least-privilege RBAC, then an uninstall that leaves nothing of it behind but CRDs.

The installed operator watches only a namespace this module creates (never cluster-wide: other tests' sessions
on the shared cluster must not be touched); the cluster-wide RBAC is checked by the dry runs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException
from tests.support.metrics import samples

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "reel"
BUILD = REPO / "tests" / "images" / "build.sh"
CACHE = Path(os.environ.get("REEL_CACHE") or Path.home() / ".cache" / "reel")
GROUP, VERSION, PLURAL = "reel.dev", "v1alpha1", "recordingsessions"
OPERATOR_IMAGE = os.environ.get("OPERATOR_IMAGE", "localhost/reel-operator:dev")
RECORDER_IMAGE = os.environ.get("RECORDER_IMAGE", "localhost/reel-recorder:dev")


def helm_binary() -> str:
    ours = CACHE / "bin" / "helm"
    return str(ours) if ours.is_file() else (shutil.which("helm") or "helm")


def helm(kube, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run([helm_binary(), "--kubeconfig", str(kube.kubeconfig), *args],
                          capture_output=True, text=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, f"helm {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def image_values(image: str, prefix: str) -> list[str]:
    repo, tag = image.rsplit(":", 1)
    return ["--set", f"{prefix}.repository={repo}", "--set", f"{prefix}.tag={tag}",
            "--set", f"{prefix}.pullPolicy=Never"]


def new_namespace(kube, wait_for, prefix: str) -> str:
    name = f"{prefix}{uuid.uuid4().hex[:6]}"
    kube.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    wait_for(lambda: any(sa.metadata.name == "default" for sa in kube.core.list_namespaced_service_account(name).items),
             60, f"ServiceAccount {name}/default")
    return name


@pytest.fixture
def namespaces(kube, wait_for):
    """new(prefix) -> a fresh namespace, all deleted afterwards."""
    made: list[str] = []

    def new(prefix: str = "reel-chart-") -> str:
        made.append(new_namespace(kube, wait_for, prefix))
        return made[-1]
    yield new
    for ns in made:
        try:  # sessions keep the operator's finalizer once no operator runs: drop it
            for s in kube.custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)["items"]:
                kube.custom.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, s["metadata"]["name"],
                                                           {"metadata": {"finalizers": None}})
        except ApiException:
            pass
        kube.core.delete_namespace(ns)


@pytest.fixture(scope="module")
def chart_crds(kube):
    """The chart's CRDs (RecordingSession, kopf peering), as `helm install` puts them: needed before objects
    of these kinds can be dry-run."""
    for f in sorted((CHART / "crds").glob("*.yaml")):
        kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(f))
    kube.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/recordingsessions.reel.dev",
                 "crd/kopfpeerings.kopf.dev", "crd/clusterkopfpeerings.kopf.dev")


@pytest.fixture(scope="module")
def images(kube):
    proc = subprocess.run([str(BUILD), "operator", "recorder"], capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, f"tests/images/build.sh operator recorder failed:\n{proc.stderr[-4000:]}"


# ---------------------------------------------------------------------------------------------------------
# lint, schema, dry run
# ---------------------------------------------------------------------------------------------------------
LINT_VALUES = [
    [],
    ["--set", "watchNamespaces={media,other}"],
    ["--set", "replicas=2", "--set", "metrics.enabled=true", "--set", "metrics.serviceMonitor.enabled=true"],
    ["--set", "replicas=3", "--set", "watchNamespaces={media}", "--set", "rbac.create=false",
     "--set", "serviceAccount.create=false", "--set", "serviceAccount.name=ops"],
]


@pytest.mark.parametrize("values", LINT_VALUES, ids=["default", "namespaced", "ha-metrics", "ha-namespaced-no-rbac"])
def test_helm_lint(kube, values):
    out = helm(kube, "lint", "--strict", str(CHART), *values).stdout
    assert "1 chart(s) linted, 0 chart(s) failed" in out, out


BAD_VALUES = [
    (["--set", "replicas=0"], "/replicas"),
    (["--set", "watchNamespaces={Media_NS}"], "/watchNamespaces/0"),
    (["--set", "watchNamespaces={team-*}"], "/watchNamespaces/0"),          # globs need the cluster-wide mode
    (["--set", "image.pullPolicy=Sometimes"], "/image/pullPolicy"),
    (["--set", "recorder.image.repository="], "/recorder/image/repository"),
    (["--set", "recorder.resources.limits.memory=lots"], "/recorder/resources/limits/memory"),
    (["--set", "recorder.resources.request.cpu=1"], "/recorder/resources"),  # typo: request
    (["--set", "recorder.uid=0"], "/recorder/uid"),
    (["--set", "recorder.terminationGracePeriodSeconds=1"], "/recorder/terminationGracePeriodSeconds"),
    (["--set", "recorder.imagee.tag=x"], "/recorder"),
    (["--set", "logLevel=LOUD"], "/logLevel"),
    (["--set", "handlerThreads=0"], "/handlerThreads"),
    (["--set", "liveness.port=70000"], "/liveness/port"),
    (["--set", "metrics.enabled=yes"], "/metrics/enabled"),
]


@pytest.mark.parametrize(("values", "where"), BAD_VALUES, ids=[w for _, w in BAD_VALUES])
def test_schema_refuses_bad_values(kube, values, where):
    assert_schema_refuses(kube, values, where)


def assert_schema_refuses(kube, values: list[str], where: str) -> None:
    """``helm template`` with these values fails on values.schema.json, at the JSON pointer ``where``."""
    proc = helm(kube, "template", "t", str(CHART), *values, check=False)
    assert proc.returncode != 0, f"accepted {values}:\n{proc.stdout[:500]}"
    assert "values don't meet the specifications of the schema" in proc.stderr, proc.stderr
    assert f"at '{where}" in proc.stderr, proc.stderr


def test_bad_values_fail_at_install_and_create_nothing(kube, namespaces):
    ns = namespaces()
    proc = helm(kube, "install", "bad", str(CHART), "-n", ns, "--set", "replicas=0", check=False)
    assert proc.returncode != 0 and "/replicas" in proc.stderr, proc.stderr
    assert helm(kube, "status", "bad", "-n", ns, check=False).returncode != 0
    assert not kube.rbac.list_cluster_role(label_selector="app.kubernetes.io/instance=bad").items


DRY_RUN_VALUES = {
    "clusterwide": [],
    "namespaced": ["WATCH"],
    "ha-clusterwide-metrics": ["--set", "replicas=2", "--set", "metrics.enabled=true"],
    "ha-namespaced": ["--set", "replicas=2", "WATCH"],
}


@pytest.mark.parametrize("case", list(DRY_RUN_VALUES))
def test_rendered_chart_passes_server_side_dry_run(kube, namespaces, chart_crds, case):
    ns = namespaces()
    values: list[str] = []
    for v in DRY_RUN_VALUES[case]:
        if v == "WATCH":  # namespaced: two watched namespaces that exist
            values += ["--set", f"watchNamespaces={{{namespaces()},{namespaces()}}}"]
        else:
            values.append(v)
    rendered = helm(kube, "template", f"dry-{case}", str(CHART), "-n", ns, *values).stdout
    kinds = sorted({d["kind"] for d in yaml.safe_load_all(rendered) if d})
    expected = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment"}
    assert expected <= set(kinds), kinds
    if "WATCH" in DRY_RUN_VALUES[case]:
        assert {"Role", "RoleBinding"} <= set(kinds), kinds
    if "replicas=2" in values:
        assert ("KopfPeering" if "WATCH" in DRY_RUN_VALUES[case] else "ClusterKopfPeering") in kinds, kinds
    proc = subprocess.run([_kubectl(), "--kubeconfig", str(kube.kubeconfig), "apply", "--dry-run=server", "-f", "-"],
                          input=rendered, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"server-side dry run refused the chart ({case}):\n{proc.stderr[-3000:]}"
    assert "(server dry run)" in proc.stdout, proc.stdout


def _kubectl() -> str:
    ours = CACHE / "bin" / "kubectl"
    return str(ours) if ours.is_file() else (shutil.which("kubectl") or "kubectl")


# ---------------------------------------------------------------------------------------------------------
# install, run, uninstall
# ---------------------------------------------------------------------------------------------------------
def can_i(kube, sa: str, verb: str, resource: str, ns: str | None) -> bool:
    args = ["auth", "can-i", verb, resource, f"--as={sa}"]
    args += ["-n", ns] if ns else ["--all-namespaces"]
    return kube.kubectl(*args, check=False).stdout.strip() == "yes"


def release_objects(kube, release: str, namespaces: list[str]) -> list[str]:
    """Everything labelled with the release, cluster-scoped and in the given namespaces."""
    sel = f"app.kubernetes.io/instance={release}"
    kinds = "deployments,replicasets,pods,services,serviceaccounts,roles,rolebindings,configmaps,secrets,leases"
    found = []
    for ns in namespaces:
        out = kube.kubectl("get", kinds, "-n", ns, "-l", sel, "-o", "name", check=False).stdout.split()
        found += [f"{ns}/{o}" for o in out]
        out = kube.kubectl("get", "kopfpeerings", "-n", ns, "-l", sel, "-o", "name", check=False).stdout.split()
        found += [f"{ns}/{o}" for o in out]
    for kinds in ("clusterroles,clusterrolebindings", "clusterkopfpeerings",
                  "validatingadmissionpolicies,validatingadmissionpolicybindings,"
                  "mutatingadmissionpolicies,mutatingadmissionpolicybindings"):
        found += kube.kubectl("get", kinds, "-l", sel, "-o", "name", check=False).stdout.split()
    return found


def namespace_contents(kube, ns: str) -> list[str]:
    """What a namespace holds besides what Kubernetes puts into every namespace."""
    kinds = "pods,deployments,replicasets,services,serviceaccounts,roles,rolebindings,configmaps,secrets,leases"
    names = kube.kubectl("get", kinds, "-n", ns, "-o", "name").stdout.split()
    return [n for n in names if n not in ("serviceaccount/default", "configmap/kube-root-ca.crt")]


def test_install_serves_its_namespace_and_uninstall_leaves_nothing(kube, namespaces, images, wait_for):
    release = f"reel-chart-{uuid.uuid4().hex[:4]}"
    ns, watched, other = namespaces(), namespaces("reel-chart-w-"), namespaces("reel-chart-o-")
    t0 = time.monotonic()
    helm(kube, "install", release, str(CHART), "-n", ns, "--wait", "--timeout", "240s",
         "--set", f"watchNamespaces={{{watched}}}",
         *image_values(OPERATOR_IMAGE, "image"), *image_values(RECORDER_IMAGE, "recorder.image"),
         "--set", "recorder.terminationGracePeriodSeconds=15", "--set", "recorder.deleteTimeoutSeconds=30",
         "--set", "recorder.startTimeoutSeconds=60", "--set", "logLevel=DEBUG", "--set", "metrics.enabled=true",
         "--set", "handlerThreads=8")
    print(f"\nhelm install --wait: {time.monotonic() - t0:.1f} s")

    # the operator pod runs the image built here, hardened, and its liveness endpoint answers
    deploy = client.AppsV1Api(kube.api).read_namespaced_deployment(f"{release}-operator", ns)
    assert deploy.status.available_replicas == 1
    pods = kube.core.list_namespaced_pod(ns, label_selector=f"app.kubernetes.io/instance={release}").items
    assert len(pods) == 1
    pod = pods[0]
    assert pod.spec.containers[0].image == OPERATOR_IMAGE
    sc = pod.spec.containers[0].security_context
    assert sc.read_only_root_filesystem and not sc.allow_privilege_escalation and sc.capabilities.drop == ["ALL"]
    assert pod.spec.security_context.run_as_non_root and pod.spec.security_context.run_as_user == 10001
    env = {e.name: e.value for e in pod.spec.containers[0].env if e.value is not None}
    assert env["REEL_NAMESPACES"] == watched and env["REEL_STANDALONE"] == "true", env
    assert env["REEL_RECORDER_IMAGE"] == RECORDER_IMAGE and env["REEL_HANDLER_THREADS"] == "8", env

    # least privilege, as the operator's ServiceAccount
    sa = f"system:serviceaccount:{ns}:{release}-operator"
    for verb, res in [("create", "pods"), ("delete", "pods"), ("watch", "recordingsessions.reel.dev"),
                      ("patch", "recordingsessions.reel.dev/status"), ("create", "roles"),
                      ("create", "rolebindings"), ("create", "serviceaccounts"), ("create", "leases"),
                      ("create", "events"), ("list", "serviceaccounts"), ("patch", "serviceaccounts")]:
        assert can_i(kube, sa, verb, res, watched), f"operator cannot {verb} {res} in {watched}"
    for verb, res, where in [("get", "secrets", watched), ("list", "secrets", watched), ("get", "secrets", ns),
                             ("create", "pods", other), ("create", "roles", other), ("create", "pods", ns),
                             ("patch", "recordingsessions.reel.dev/status", other), ("update", "roles", watched),
                             ("escalate", "roles", watched), ("bind", "roles", watched),
                             ("delete", "recordingsessions.reel.dev", watched), ("list", "secrets", None),
                             ("create", "clusterroles", None), ("list", "pods", None)]:
        assert not can_i(kube, sa, verb, res, where), f"operator may {verb} {res} in {where or 'all namespaces'}"

    # it serves its namespace: a session gets its recorder pod and identity (the Role it grants is checked by
    # RBAC against what the operator holds), then fails cleanly (no Janus) and is cleaned up on delete
    session = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "RecordingSession", "metadata": {"name": "probe"},
               "spec": {"room": {"server": f"ws://no-janus.{watched}.svc:8188", "id": 1},
                        "storage": {"local": {"path": "/recordings"}}}}
    created = kube.custom.create_namespaced_custom_object(GROUP, VERSION, watched, PLURAL, session)
    # the chart's MutatingAdmissionPolicy (Kubernetes >= 1.36) put the finalizer on at admission: the operator
    # sends no finalizer patch of its own (templates/session-finalizer.yaml)
    assert created["metadata"].get("finalizers") == ["reel.dev/finalizer"], created["metadata"]

    def status():
        obj = kube.custom.get_namespaced_custom_object(GROUP, VERSION, watched, PLURAL, "probe")
        return obj.get("status") or {}
    try:
        final = wait_for(lambda: status() if status().get("phase") == "Failed" else None, 180,
                         "the session to fail (no Janus)")
    except AssertionError:
        logs = kube.kubectl("logs", "-n", ns, f"deploy/{release}-operator", "--tail=60", check=False).stdout
        raise AssertionError(f"status {json.dumps(status())}\noperator log:\n{logs}") from None
    assert final.get("reason") or final.get("stopReason"), final
    assert "no-janus" in (final.get("message") or ""), final
    events = kube.core.list_namespaced_event(watched, field_selector="involvedObject.name=probe").items
    assert events, "no Events posted on the session"
    # the chart's RBAC is enough: the operator was refused nothing
    log = kube.kubectl("logs", "-n", ns, f"deploy/{release}-operator", check=False).stdout
    assert "Forbidden" not in log and " 403" not in log, [line for line in log.splitlines() if "orbidden" in line][:5]
    rbac_names = {r.metadata.name for r in kube.rbac.list_namespaced_role(watched).items}
    assert any("probe" in n for n in rbac_names) or not rbac_names  # per-session Role (may already be gone)
    # the metrics Service answers (through the API server's service proxy) and counted the failed session
    def metrics_with_the_failure():
        text = kube.core.connect_get_namespaced_service_proxy_with_path(f"{release}-metrics:metrics", ns, "metrics")
        m = samples(text)
        return m if m.get(("reel_sessions", (("phase", "Failed"),))) == 1 else None
    m = wait_for(metrics_with_the_failure, 30, "metrics to show the failed session")
    assert m[("reel_sessions_finished_total", (("phase", "Failed"), ("stop_reason", final["stopReason"])))] == 1, m
    assert m[("reel_session_phase_transitions_total", (("phase", "Failed"),))] == 1, m

    kube.custom.delete_namespaced_custom_object(GROUP, VERSION, watched, PLURAL, "probe")

    def gone():
        try:
            kube.custom.get_namespaced_custom_object(GROUP, VERSION, watched, PLURAL, "probe")
            return False
        except ApiException as e:
            return e.status == 404
    wait_for(gone, 120, "the session's finalizer to be removed by the operator")
    def free_accounts(where: str) -> list[str]:  # the recorder accounts the operator keeps made ahead
        return [f"serviceaccount/{a.metadata.name}" for a in kube.core.list_namespaced_service_account(
            where, label_selector="reel.dev/account-pool=free").items]
    free = free_accounts(watched)
    assert free, "the operator keeps recorder accounts made ahead in the namespace it served"

    def session_leftovers():  # what is in the watched namespace besides the chart's own Role/RoleBinding and the
        # operator's free accounts (the release's too: they go with it, below)
        ours = {o.split("/", 1)[1] for o in release_objects(kube, release, [watched])} | set(free_accounts(watched))
        return [o for o in namespace_contents(kube, watched) if o not in ours]
    try:
        wait_for(lambda: not session_leftovers(), 120, "the session's objects to be gone")
    except AssertionError as e:
        raise AssertionError(f"{e}; left in {watched}: {session_leftovers()}") from None

    # uninstall: nothing of the release is left; the CRDs stay (Helm never deletes CRDs)
    helm(kube, "uninstall", release, "-n", ns, "--wait", "--timeout", "120s")
    wait_for(lambda: not release_objects(kube, release, [ns, watched, other]), 60, "the release's objects to go")
    assert not release_objects(kube, release, [ns, watched, other])
    wait_for(lambda: not namespace_contents(kube, ns), 60, f"namespace {ns} to be empty")
    # the free accounts went with the chart's ClusterRole that owned them (the garbage collector)
    wait_for(lambda: not namespace_contents(kube, watched), 60, f"namespace {watched} to be empty")
    assert not kube.kubectl("get", "clusterroles,clusterrolebindings", "-o", "name").stdout.count(release)
    assert helm(kube, "list", "-A", "-q").stdout.split().count(release) == 0
    kube.kubectl("get", "crd", "recordingsessions.reel.dev")  # still there
