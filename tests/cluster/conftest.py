"""Fixtures of the kind cluster tests (tests/cluster).

They use the cluster that ``make cluster-up`` started: the kubeconfig in ``$KUBECONFIG`` when that file
exists, else ``$REEL_CACHE/kubeconfig`` (default ``~/.cache/reel/kubeconfig``; ``kubeconfig-NAME`` for a
private cluster ``REEL_CLUSTER=NAME``). Without a reachable
cluster every test is skipped with the reason, unless ``REEL_REQUIRE_CLUSTER=1`` (``make test-cluster``
sets it): then they fail, so CI cannot pass without running them.

Every test here is marked ``cluster``; the plain ``make test`` run deselects them (``-m "not cluster"``).

Fixtures:
- ``kube`` (session): ``Kube`` with ``.api`` (ApiClient), ``.core``, ``.rbac``, ``.custom``, ``.apiext``,
  ``.kubeconfig`` and ``.kubectl(*args)`` (our own kubectl from ``$REEL_CACHE/bin`` when built).
- ``namespace`` (function): a fresh namespace (with its default ServiceAccount), deleted afterwards.
- ``test_image`` (session): ``localhost/reel-cluster-test:1``, built from ``tests/cluster/image/Dockerfile``
  by ``hack/kind/cluster.sh load-image`` (podman + local base image here, docker elsewhere) and loaded
  into the cluster.
- ``make_pod(name, image, args, **pod_spec)``: a V1Pod of the test image (pull policy Never).
- ``wait_for(predicate, timeout, what)``: poll until ``predicate()`` is truthy; returns its value.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.support import waiting

try:
    import urllib3
    from kubernetes import client, config
    from kubernetes.client.rest import ApiException
except ImportError:  # pragma: no cover - the dev extra installs it
    client = None

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CLUSTER_SH = REPO / "hack" / "kind" / "cluster.sh"
CACHE = Path(os.environ.get("REEL_CACHE") or Path.home() / ".cache" / "reel")
TEST_IMAGE = "localhost/reel-cluster-test:1"


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.cluster)


def kubeconfig_path() -> Path:
    env = os.environ.get("KUBECONFIG")
    if env and Path(env).is_file():
        return Path(env)
    name = os.environ.get("REEL_CLUSTER", "reel")
    return CACHE / ("kubeconfig" if name == "reel" else f"kubeconfig-{name}")


def kubectl_binary() -> str:
    ours = CACHE / "bin" / "kubectl"
    return str(ours) if ours.is_file() else (shutil.which("kubectl") or "kubectl")


def wait_for(predicate, timeout: float = 120, what: str = "condition", interval: float = 0.5):
    return waiting.wait_for(predicate, timeout, what, interval)


@dataclass
class Kube:
    api: client.ApiClient
    kubeconfig: Path

    @property
    def core(self):
        return client.CoreV1Api(self.api)

    @property
    def rbac(self):
        return client.RbacAuthorizationV1Api(self.api)

    @property
    def custom(self):
        return client.CustomObjectsApi(self.api)

    @property
    def apiext(self):
        return client.ApiextensionsV1Api(self.api)

    def kubectl(self, *args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
        return subprocess.run([kubectl_binary(), "--kubeconfig", str(self.kubeconfig), *args],
                              check=check, capture_output=True, text=True, **kw)

    def pod_phase(self, ns: str, name: str) -> str:
        return self.core.read_namespaced_pod(name, ns).status.phase

    def wait_pod_phase(self, ns: str, name: str, phases=("Succeeded",), timeout: float = 120) -> str:
        def done():
            phase = self.pod_phase(ns, name)
            if phase == "Failed" and "Failed" not in phases:
                raise AssertionError(f"pod {ns}/{name} failed: {self.describe(ns, name)}")
            return phase if phase in phases else None
        try:
            return wait_for(done, timeout, f"pod {ns}/{name} in {phases}")
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.describe(ns, name)}") from None

    def describe(self, ns: str, name: str) -> str:
        return self.kubectl("-n", ns, "describe", "pod", name, check=False).stdout[-3000:]


def _require() -> bool:
    return os.environ.get("REEL_REQUIRE_CLUSTER") == "1"


def _unavailable(reason: str):
    if _require():
        pytest.fail(f"REEL_REQUIRE_CLUSTER=1 but {reason}")
    pytest.skip(f"{reason} (start one with `make cluster-up`)")


@pytest.fixture(scope="session")
def kube() -> Kube:
    if client is None:
        _unavailable("the kubernetes Python client is not installed")
    path = kubeconfig_path()
    if not path.is_file():
        _unavailable(f"no kind cluster: kubeconfig {path} does not exist")
    api = config.new_client_from_config(config_file=str(path))
    try:
        client.VersionApi(api).get_code(_request_timeout=5)
    except (ApiException, urllib3.exceptions.HTTPError, OSError) as e:
        _unavailable(f"no kind cluster answers at {api.configuration.host} ({path}): {e}")
    return Kube(api=api, kubeconfig=path)


@pytest.fixture
def namespace(kube: Kube):
    name = f"reel-t-{uuid.uuid4().hex[:8]}"
    kube.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    # pods need the namespace's default ServiceAccount, which the controller-manager creates
    wait_for(lambda: any(sa.metadata.name == "default"
                         for sa in kube.core.list_namespaced_service_account(name).items),
             60, f"ServiceAccount {name}/default")
    yield name
    kube.core.delete_namespace(name)


@pytest.fixture(scope="session")
def test_image(kube: Kube) -> str:
    proc = subprocess.run(
        [str(CLUSTER_SH), "load-image", str(HERE / "image" / "Dockerfile"), TEST_IMAGE, str(HERE / "image")],
        capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, f"building/loading {TEST_IMAGE} failed:\n{proc.stderr[-4000:]}"
    return TEST_IMAGE


def _pod(name: str, image: str, args: list[str], **spec) -> client.V1Pod:
    """A pod running the test image (never pulled: it must have been loaded into the node)."""
    meta = spec.pop("metadata", None) or client.V1ObjectMeta(name=name)
    container = client.V1Container(name="main", image=image, args=args, image_pull_policy="Never",
                                   **spec.pop("container", {}))
    return client.V1Pod(metadata=meta,
                        spec=client.V1PodSpec(containers=[container], restart_policy="Never",
                                              termination_grace_period_seconds=1, **spec))


@pytest.fixture(name="make_pod")
def make_pod_fixture():
    """``make_pod(name, image, args, **pod_spec)`` -> V1Pod (imagePullPolicy Never, restartPolicy Never)."""
    return _pod


@pytest.fixture(name="wait_for")
def wait_for_fixture():
    return wait_for
