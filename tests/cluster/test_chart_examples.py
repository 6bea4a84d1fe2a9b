"""README's "Install with Helm", on the kind cluster: the chart's operator (image built here) plus examples/
(Janus, MinIO, two synthetic participants, the sample RecordingSession) record a room into the store.

The examples live in namespace `media`; here they are applied to a fresh namespace (every `media` in them
renamed) and the operator watches only that namespace, so the shared cluster's other tests are not touched.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import yaml
from kubernetes import client

# tests/cluster is on sys.path (pytest's prepend import mode; no __init__.py): the same module pytest collects
from test_chart import CHART, GROUP, OPERATOR_IMAGE, PLURAL, RECORDER_IMAGE, VERSION, helm, image_values
from test_chart import namespaces as namespaces  # the fixture

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
BUILD = REPO / "tests" / "images" / "build.sh"


def renamed(obj, ns: str):
    """The example object with namespace `media` (and `*.media.svc` names) moved to ``ns``."""
    if isinstance(obj, dict):
        return {k: (ns if k == "namespace" and v == "media" else renamed(v, ns)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [renamed(v, ns) for v in obj]
    if isinstance(obj, str):
        return obj.replace(".media.svc", f".{ns}.svc")
    return obj


def apply_example(kube, name: str, ns: str, **patch) -> list[dict]:
    docs = [renamed(d, ns) for d in yaml.safe_load_all((EXAMPLES / name).read_text()) if d]
    for d in docs:
        for key, value in patch.get(d["kind"], {}).items():
            d["spec"][key] = {**d["spec"].get(key, {}), **value}
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))
    return docs


@pytest.fixture(scope="module")
def all_images(kube):
    proc = subprocess.run([str(BUILD), "all"], capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, f"tests/images/build.sh all failed:\n{proc.stderr[-4000:]}"


def test_examples_record_a_room_into_minio(kube, namespaces, all_images, wait_for):
    ns = namespaces("reel-ex-")
    release = f"reel-ex-{uuid.uuid4().hex[:4]}"
    helm(kube, "install", release, str(CHART), "-n", ns, "--wait", "--timeout", "240s",
         "--set", f"watchNamespaces={{{ns}}}",
         *image_values(OPERATOR_IMAGE, "image"), *image_values(RECORDER_IMAGE, "recorder.image"),
         "--set", "recorder.resources.requests.cpu=50m")
    apply_example(kube, "janus.yaml", ns)
    apply_example(kube, "minio.yaml", ns)
    kube.kubectl("-n", ns, "rollout", "status", "deploy/janus", "--timeout=180s")
    kube.kubectl("-n", ns, "wait", "--for=condition=Complete", "job/minio-bucket", "--timeout=180s")
    apply_example(kube, "participants.yaml", ns)
    kube.kubectl("-n", ns, "rollout", "status", "deploy/participants", "--timeout=180s")

    session = apply_example(kube, "session.yaml", ns)[0]
    name = session["metadata"]["name"]

    def status():
        return (kube.custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name).get("status") or {})

    def diagnose() -> str:
        logs = kube.kubectl("-n", ns, "logs", f"deploy/{release}-operator", "--tail=40", check=False).stdout
        rec = kube.kubectl("-n", ns, "logs", f"reel-rec-{name}", "--tail=40", check=False).stdout
        return f"status: {json.dumps(status())[:3000]}\noperator:\n{logs}\nrecorder:\n{rec}"

    try:
        wait_for(lambda: status().get("phase") == "Recording" and status().get("activeParticipants") == 2,
                 240, "Recording with 2 participants")
        wait_for(lambda: (status().get("upload") or {}).get("segments", 0) >= 6, 120, "segments recorded")
    except AssertionError as e:
        raise AssertionError(f"{e}\n{diagnose()}") from None
    t_stop = time.monotonic()
    kube.custom.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name, {"spec": {"stop": True}})
    try:
        final = wait_for(lambda: status() if status().get("phase") in ("Completed", "BackedUp", "Failed") else None,
                         240, "the session to finish")
    except AssertionError as e:
        raise AssertionError(f"{e}\n{diagnose()}") from None
    print(f"\nstop -> {final['phase']}: {time.monotonic() - t_stop:.1f} s; upload {final.get('upload')}")
    assert final["phase"] == "Completed", diagnose()
    assert final.get("stopReason") == "Requested", final
    assert final["upload"]["progress"] == 100 and final["upload"]["pendingSegments"] == 0, final
    assert len(final["playlists"]) == 2 and final.get("manifest"), final

    # what the store holds, listed from inside the cluster with the recorder image's boto3
    lister = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "list-bucket"},
        "spec": {"restartPolicy": "Never", "containers": [{
            "name": "ls", "image": RECORDER_IMAGE, "imagePullPolicy": "Never", "command": ["python", "-c",
            "import boto3, json; s3 = boto3.client('s3', endpoint_url='http://minio:9000', region_name='us-east-1');"
            "p = s3.get_paginator('list_objects_v2');"
            "print(json.dumps({o['Key']: o['Size'] for page in p.paginate(Bucket='recordings')"
            " for o in page.get('Contents', [])}))"],
            "envFrom": [{"secretRef": {"name": "s3"}}]}]},
    }
    kube.core.create_namespaced_pod(ns, lister)
    kube.wait_pod_phase(ns, "list-bucket", ("Succeeded",), timeout=120)
    objects = json.loads(kube.core.read_namespaced_pod_log("list-bucket", ns).strip().splitlines()[-1])
    for key in [*final["playlists"], final["manifest"]]:
        assert key in objects, f"{key} not in the bucket: {sorted(objects)[:20]}"
    segments = [k for k in objects if k.endswith(".ts")]
    assert len(segments) == final["upload"]["segments"] >= 6, (final["upload"], sorted(objects))
    assert all(objects[k] > 0 for k in segments), objects

    # the recorder pod is gone; deleting the finished session and uninstalling leave nothing of the operator
    wait_for(lambda: _no_recorder_pod(kube, ns, name), 120, "the recorder pod to be removed")
    kube.custom.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
    helm(kube, "uninstall", release, "-n", ns, "--wait")
    left = kube.kubectl("get", "clusterroles,clusterrolebindings", "-o", "name").stdout
    assert release not in left
    assert not client.AppsV1Api(kube.api).list_namespaced_deployment(
        ns, label_selector=f"app.kubernetes.io/instance={release}").items


def _no_recorder_pod(kube, ns: str, session: str) -> bool:
    return not [p for p in kube.core.list_namespaced_pod(ns).items if p.metadata.name == f"reel-rec-{session}"]
