"""Fixtures of the end-to-end suite: the kind cluster, our images, and per test a fresh namespace with the
chart installed, a Janus room server and a MinIO store reachable by Service name.

Marked ``e2e`` and ``cluster``: the plain ``make test`` pytest run deselects them; ``make e2e`` (and
``make test-cluster``) run them. Without a cluster they skip, unless ``REEL_REQUIRE_CLUSTER=1``.
On a failing test, the namespace's sessions (with status), events and pod logs are printed.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from .kit import REPO, Kit, kubeconfig_path

HERE = Path(__file__).resolve().parent
ROOMS = [1001, 1002, 1003, 1004, 1005, 1007, 1008, 1009]


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.e2e)
            item.add_marker(pytest.mark.cluster)


def _unavailable(reason: str):
    if os.environ.get("REEL_REQUIRE_CLUSTER") == "1":
        pytest.fail(f"e2e needs the kind cluster: {reason}")
    pytest.skip(f"e2e needs the kind cluster (make cluster-up): {reason}")


@pytest.fixture(scope="session")
def kit() -> Kit:
    if not kubeconfig_path().is_file():
        _unavailable(f"no kubeconfig at {kubeconfig_path()}")
    k = Kit()
    if k.kubectl("get", "--raw", "/readyz", check=False).returncode != 0:
        _unavailable("the API server does not answer")
    return k


@pytest.fixture(scope="session")
def images(kit):
    """Builds the images from this checkout (only what changed) and loads them into the cluster."""
    if os.environ.get("REEL_E2E_SKIP_BUILD") != "1":
        r = subprocess.run([str(REPO / "tests" / "images" / "build.sh"), "operator", "recorder", "janus",
                            "publisher", "minio"], env=kit.env, capture_output=True, text=True, timeout=3600)
        if r.returncode != 0:
            pytest.fail(f"building the images failed:\n{r.stderr[-4000:]}")


@pytest.fixture(scope="session")
def crds(kit):
    """The CRDs of this checkout: Helm installs a chart's CRDs only when they are missing and never upgrades
    them, so on a reused cluster the chart alone would leave an older RecordingSession schema in place."""
    kit.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    kit.kubectl("wait", "--for=condition=Established", "-f", str(REPO / "crds"), "--timeout=60s")


@dataclass
class Env:
    kit: Kit
    ns: str
    server: str  # Janus WebSocket URL
    endpoint: str  # MinIO endpoint URL
    bucket: str = "recordings"


@pytest.fixture
def env(kit, images, crds, request) -> Env:
    ns = kit.create_namespace()
    try:
        kit.helm_install("reel", ns)
        server, endpoint = kit.deploy_room_and_store(ns, ROOMS)
        yield Env(kit, ns, server, endpoint)
    finally:
        failed = getattr(getattr(request.node, "rep_call", None), "failed", True)
        if failed:
            print(kit.dump(ns))
        # the sessions first, while their operator runs: it removes their finalizer (uninstalled first, it could
        # not, and the namespace would stay Terminating)
        kit.kubectl("delete", "recs", "--all", "-n", ns, "--timeout=120s", check=False)
        kit.helm_uninstall("reel", ns)
        kit.delete_namespace(ns, wait=False)
