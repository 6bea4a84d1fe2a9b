"""Upgrading Reel on kind the way README "Upgrading Reel" says (Helm installs crds/ once and never upgrades them):
from the RecordingSession CRD of an earlier version (tests/data/crds/, commit f44d821: before the CEL
immutability rules and status.appliedGeneration) with the chart installed and a session created under it,
`make crds-apply` (kubectl apply --server-side) then `helm upgrade`. The old session is still served and
readable, the new fields are kept and the new rules refuse what they should.

The CRD is cluster-wide: this module leaves the current CRD applied when it ends, whatever happened.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml
from kubernetes.client.rest import ApiException

# tests/cluster is on sys.path (pytest's prepend import mode; no __init__.py): the same module pytest collects
from test_chart import CACHE, CHART, GROUP, OPERATOR_IMAGE, PLURAL, RECORDER_IMAGE, VERSION, helm, image_values
from test_chart import images as images  # the fixture
from test_chart import namespaces as namespaces  # the fixture

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
PREVIOUS_CRD = REPO / "tests" / "data" / "crds" / "reel.dev_recordingsessions.f44d821.yaml"
CRD_NAME = "recordingsessions.reel.dev"


def crd_schema(kube) -> dict:
    crd = json.loads(kube.kubectl("get", "crd", CRD_NAME, "-o", "json").stdout)
    version, = [v for v in crd["spec"]["versions"] if v["name"] == VERSION]
    return version["schema"]["openAPIV3Schema"]


def status_fields(schema: dict) -> set[str]:
    return set(schema["properties"]["status"]["properties"])


def mode_rules(schema: dict) -> list[dict]:
    recording = schema["properties"]["spec"]["properties"]["recording"]["properties"]
    return recording["mode"].get("x-kubernetes-validations") or []


def session(name: str, ns: str, **recording) -> dict:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "RecordingSession",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"room": {"server": f"ws://no-janus.{ns}.svc:8188", "id": 7},
                     "recording": {"maxIdleSeconds": 30, **recording},
                     "storage": {"local": {"path": "/recordings"}}, "stop": True}}


def dry_run_create(kube, body: dict) -> subprocess.CompletedProcess:
    return kube.kubectl("create", "--dry-run=server", "-f", "-", input=yaml.safe_dump(body), check=False)


@pytest.fixture
def previous_crd(kube):
    """The earlier version's CRD in place of the current one; the current one is applied again afterwards."""
    kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(PREVIOUS_CRD))
    kube.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{CRD_NAME}")
    yield
    for f in sorted((CHART / "crds").glob("*.yaml")):
        kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(f))


def test_upgrade_from_the_previous_crd_keeps_old_sessions_and_brings_the_new_rules(kube, namespaces, images,
                                                                                    previous_crd, wait_for):
    ns, watched = namespaces("reel-up-"), namespaces("reel-up-w-")
    release = f"reel-up-{uuid.uuid4().hex[:4]}"
    previous = crd_schema(kube)  # the previous version: no appliedGeneration, mode may be edited
    assert "appliedGeneration" not in status_fields(previous) and not mode_rules(previous)

    helm(kube, "install", release, str(CHART), "-n", ns, "--wait", "--timeout", "240s",
         "--set", f"watchNamespaces={{{watched}}}",
         *image_values(OPERATOR_IMAGE, "image"), *image_values(RECORDER_IMAGE, "recorder.image"))
    assert "appliedGeneration" not in status_fields(crd_schema(kube)), "helm install leaves an existing CRD alone"

    # a session created under the previous CRD (stopped before it starts: the operator ends it, no pod needed)
    kube.kubectl("create", "-f", "-", input=yaml.safe_dump(session("old-one", watched)))

    def get(name: str) -> dict:
        return kube.custom.get_namespaced_custom_object(GROUP, VERSION, watched, PLURAL, name)
    wait_for(lambda: (get("old-one").get("status") or {}).get("phase") == "Completed", 120, "old-one Completed")
    set_applied = ("patch", "recs", "old-one", "-n", watched, "--subresource=status", "--type", "merge",
                   "-p", '{"status":{"appliedGeneration":1}}')
    kube.kubectl(*set_applied)
    before = get("old-one")
    assert "appliedGeneration" not in before["status"]  # a field the old schema does not know: pruned
    assert kube.kubectl("patch", "recs", "old-one", "-n", watched, "--type", "merge", "--dry-run=server",
                        "-p", '{"spec":{"recording":{"mode":"composite"}}}', check=False).returncode == 0

    # README "Upgrading Reel": the CRDs first (make crds-apply), then the chart
    env = {**os.environ, "KUBECONFIG": str(kube.kubeconfig), "PATH": f"{CACHE / 'bin'}:{os.environ.get('PATH', '')}"}
    proc = subprocess.run(["make", "-C", str(REPO), "crds-apply"], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    kube.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{CRD_NAME}")
    helm(kube, "upgrade", release, str(CHART), "-n", ns, "--wait", "--timeout", "240s")
    assert "appliedGeneration" in status_fields(crd_schema(kube)) and mode_rules(crd_schema(kube))
    crd = json.loads(kube.kubectl("get", "crd", CRD_NAME, "-o", "json").stdout)
    assert crd["status"]["storedVersions"] == [VERSION]

    # the old session is still served and readable, unchanged
    after = get("old-one")
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    assert after["spec"] == before["spec"] and after["status"]["phase"] == "Completed", after
    listed = kube.kubectl("get", "recs", "-n", watched, "old-one", "--no-headers").stdout
    assert "Completed" in listed, listed  # printer columns read it
    # the new rules apply to edits made after the upgrade: a field fixed at the start cannot change any more
    edit = kube.kubectl("patch", "recs", "old-one", "-n", watched, "--type", "merge",
                        "-p", '{"spec":{"recording":{"mode":"composite"}}}', check=False)
    assert edit.returncode != 0 and "mode is immutable" in edit.stderr, edit.stderr
    edit = kube.kubectl("patch", "recs", "old-one", "-n", watched, "--type", "merge",
                        "-p", '{"spec":{"backupStorage":{"local":{"path":"/backup"}}}}', check=False)
    assert edit.returncode != 0 and "backupStorage" in edit.stderr, edit.stderr
    # new fields are kept, and the upgraded operator serves a session made now
    kube.kubectl(*set_applied)
    assert get("old-one")["status"]["appliedGeneration"] == 1
    fresh = session("new-one", watched)
    assert dry_run_create(kube, fresh).returncode == 0
    kube.kubectl("create", "-f", "-", input=yaml.safe_dump(fresh))
    wait_for(lambda: (get("new-one").get("status") or {}).get("phase") == "Completed", 120, "new-one Completed")
    status = get("new-one")["status"]
    assert status["observedGeneration"] == 1 and {c["type"] for c in status["conditions"]} >= {"Ready", "Finished"}
    helm(kube, "uninstall", release, "-n", ns, "--wait", "--timeout", "120s")
    try:
        get("old-one")  # Helm never deletes CRDs, nor the sessions
    except ApiException as e:  # pragma: no cover - a failure message
        raise AssertionError(f"old-one gone after the uninstall: {e}") from None
