"""The project images (Dockerfile, recorder_image/Dockerfile) run on the kind cluster as the operator runs them:
non-root, read-only root file system, every capability dropped, in a namespace that enforces the
``restricted`` Pod Security Standard (the apiserver refuses any pod that is not hardened this way).

Images are built here (podman + the local base image; docker elsewhere) and loaded by tests/images/build.sh.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest
from kubernetes import client

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "tests" / "images" / "build.sh"
OPERATOR_IMAGE = os.environ.get("OPERATOR_IMAGE", "localhost/reel-operator:dev")
RECORDER_IMAGE = os.environ.get("RECORDER_IMAGE", "localhost/reel-recorder:dev")
UID = 10001

# Runs inside each image (its venv's python): who am I, what can I write, what is (not) installed.
INSPECT = r"""
import importlib.util, json, os, shutil, sys
def writable(path):
    try:
        with open(os.path.join(path, ".reel-probe"), "w") as f:
            f.write("x")
        os.remove(os.path.join(path, ".reel-probe"))
        return True
    except OSError:
        return False
mods = ["av", "boto3", "websockets", "aiortc", "kopf", "kubernetes", "pip", "setuptools", "reel_api",
        "reel_recorder", "reel_operator"]
print(json.dumps({
    "uid": os.getuid(), "gid": os.getgid(), "python": sys.version.split()[0], "prefix": sys.prefix,
    "writable": {p: writable(p) for p in ["/", "/opt/reel", "/usr", "/etc", "/tmp", "/spool"] if os.path.isdir(p)},
    "tools": {t: shutil.which(t) for t in ["gcc", "cc", "g++", "make", "ld", "apt-get", "pip", "pip3"]},
    "modules": {m: importlib.util.find_spec(m) is not None for m in mods},
}))
"""


@pytest.fixture(scope="module")
def images(kube):
    proc = subprocess.run([str(BUILD), "operator", "recorder"], capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, f"tests/images/build.sh operator recorder failed:\n{proc.stderr[-4000:]}"
    return {"operator": OPERATOR_IMAGE, "recorder": RECORDER_IMAGE}


@pytest.fixture
def restricted_ns(kube, wait_for):
    """A fresh namespace enforcing the `restricted` Pod Security Standard."""
    name = f"reel-img-{uuid.uuid4().hex[:6]}"
    labels = {"pod-security.kubernetes.io/enforce": "restricted",
              "pod-security.kubernetes.io/enforce-version": "latest"}
    kube.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels)))
    wait_for(lambda: any(sa.metadata.name == "default" for sa in kube.core.list_namespaced_service_account(name).items),
             60, f"ServiceAccount {name}/default")
    yield name
    kube.core.delete_namespace(name)


def hardened_pod(name: str, image: str, *, args=None, command=None) -> dict:
    """The security context the operator gives recorder pods (and the chart the operator)."""
    container = {
        "name": "main", "image": image, "imagePullPolicy": "Never",
        "securityContext": {"readOnlyRootFilesystem": True, "runAsNonRoot": True, "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, {"name": "spool", "mountPath": "/spool"}],
    }
    if args is not None:
        container["args"] = args
    if command is not None:
        container["command"] = command
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never", "terminationGracePeriodSeconds": 1, "automountServiceAccountToken": False,
            # no runAsUser: the image's own USER (numeric 10001) must satisfy runAsNonRoot
            "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [container],
            "volumes": [{"name": "tmp", "emptyDir": {}}, {"name": "spool", "emptyDir": {}}],
        },
    }


def run_to_completion(kube, ns: str, pod: dict) -> str:
    kube.core.create_namespaced_pod(ns, pod)
    name = pod["metadata"]["name"]
    kube.wait_pod_phase(ns, name, ("Succeeded",), timeout=180)
    return kube.core.read_namespaced_pod_log(name, ns)


@pytest.mark.parametrize(("which", "usage"), [("recorder", "usage: reel-recorder"),
                                              ("operator", "usage: reel-operator")])
def test_entrypoint_runs_hardened_and_logs_through_the_api(kube, images, restricted_ns, which, usage):
    logs = run_to_completion(kube, restricted_ns, hardened_pod(f"{which}-help", images[which], args=["--help"]))
    assert usage in logs, logs
    status = kube.core.read_namespaced_pod(f"{which}-help", restricted_ns).status.container_statuses[0]
    assert status.state.terminated.exit_code == 0


@pytest.mark.parametrize("which", ["recorder", "operator"])
def test_image_user_filesystem_and_contents(kube, images, restricted_ns, which):
    logs = run_to_completion(kube, restricted_ns, hardened_pod(f"{which}-inspect", images[which],
                                                               command=["python", "-c", INSPECT]))
    facts = json.loads(logs.strip().splitlines()[-1])
    assert (facts["uid"], facts["gid"]) == (UID, UID), facts
    assert facts["python"].startswith("3.11."), facts
    assert facts["prefix"] == "/opt/reel", facts  # the image's virtual environment
    # read-only root: only the emptyDirs are writable
    assert facts["writable"] == {"/": False, "/opt/reel": False, "/usr": False, "/etc": False, "/tmp": True,
                                 **({"/spool": True} if "/spool" in facts["writable"] else {})}, facts
    # no compiler or build tools, no pip in the environment
    assert not [t for t in ("gcc", "cc", "g++", "make", "ld") if facts["tools"][t]], facts
    assert not facts["modules"]["pip"] and not facts["modules"]["setuptools"], facts
    mods = facts["modules"]
    if which == "recorder":
        # aiortc: the WebRTC ingest (spec.recording.ingest webrtc|auto), imported only when that ingest is used
        assert (mods["av"] and mods["boto3"] and mods["websockets"] and mods["aiortc"] and mods["reel_recorder"]
                and mods["reel_api"]), mods
        assert not mods["kopf"] and not mods["kubernetes"] and not mods["reel_operator"], mods
    else:
        assert mods["kopf"] and mods["kubernetes"] and mods["reel_operator"] and mods["reel_api"], mods
        assert not mods["av"] and not mods["boto3"] and not mods["aiortc"] and not mods["reel_recorder"], mods


def test_recorder_image_has_what_pyav_needs(kube, images, restricted_ns):
    """PyAV's bundled FFmpeg does what the recorder asks of it: RTP/SDP demuxing, Opus decoding, AAC encoding,
    MPEG-TS/HLS muxing; and boto3 has the S3 and STS models we keep."""
    script = r"""
import av, boto3, json
print(json.dumps({
    "ffmpeg": av.ffmpeg_version_info,
    "demux": sorted(f for f in ("sdp", "rtp") if f in av.formats_available),
    "mux": sorted(f for f in ("hls", "mpegts") if f in av.formats_available),
    "decoders": sorted(c for c in ("opus", "h264") if c in av.codecs_available),
    "aac": av.codec.Codec("aac", "w").name,
    "s3": boto3.client("s3", region_name="us-east-1", endpoint_url="http://127.0.0.1:9").meta.service_model.service_name,
    "sts": boto3.client("sts", region_name="us-east-1").meta.service_model.service_name,
}))
"""
    logs = run_to_completion(kube, restricted_ns, hardened_pod("recorder-pyav", images["recorder"],
                                                               command=["python", "-c", script]))
    facts = json.loads(logs.strip().splitlines()[-1])
    assert facts["demux"] == ["rtp", "sdp"] and facts["mux"] == ["hls", "mpegts"], facts
    assert facts["decoders"] == ["h264", "opus"] and facts["aac"] == "aac", facts
    assert (facts["s3"], facts["sts"]) == ("s3", "sts"), facts


def test_recorder_image_runs_optimized_from_its_own_byte_code(kube, images, restricted_ns):
    """The recorder's Python runs with -OO (PYTHONOPTIMIZE=2: no docstrings in memory) from byte code compiled into
    the image (read-only root: nothing could be cached at run time), and an S3 store loads neither pyOpenSSL nor
    boto3's package, with the S3 operations trim_botocore.py keeps (issue 18: a recorder pod's working set)."""
    script = r"""
import json, os, sys
import reel_recorder.cli, reel_recorder.ingest.forward
from reel_recorder.storage import S3Store
store = S3Store("b", endpoint_url="http://127.0.0.1:9", credentials={"AWS_ACCESS_KEY_ID": "a",
                                                                   "AWS_SECRET_ACCESS_KEY": "b"})
print(json.dumps({
    "optimize": sys.flags.optimize,
    "compiled at run time": sorted(n for n, m in list(sys.modules.items())
                                   if getattr(m, "__cached__", None) and not os.path.exists(m.__cached__)),
    "loaded": sorted(m for m in ("OpenSSL", "cryptography", "boto3", "s3transfer") if m in sys.modules),
    "operations": len(store._client.meta.service_model.operation_names),
}))
"""
    logs = run_to_completion(kube, restricted_ns, hardened_pod("recorder-lean", images["recorder"],
                                                               command=["python", "-c", script]))
    facts = json.loads(logs.strip().splitlines()[-1])
    assert facts["optimize"] == 2 and facts["compiled at run time"] == [], facts
    assert facts["loaded"] == [] and facts["operations"] < 20, facts
