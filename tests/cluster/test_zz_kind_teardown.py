"""`make cluster-down` leaves nothing of ours behind. Runs last (file name) and deletes the cluster, so it
only runs when asked to: ``REEL_CLUSTER_TEARDOWN=1`` (``make test-cluster`` sets it)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("REEL_CACHE") or Path.home() / ".cache" / "reel")
CLUSTER = os.environ.get("REEL_CLUSTER", "reel")
NODE = f"{CLUSTER}-control-plane"
NETWORK = os.environ.get("REEL_PODMAN_NETWORK", f"{CLUSTER}-kind")
# what runs inside a node container, seen from the host
NODE_PROCESSES = {"kubelet", "kube-apiserver", "kube-controller", "kube-scheduler", "kube-proxy", "etcd",
                  "coredns", "containerd", "containerd-shim", "containerd-shim-runc-v2"}


def provider() -> str:
    cmd = ["bash", "-c", f". {REPO}/hack/kind/lib.sh && detect_provider"]
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()


# our programs in $REEL_CACHE/bin (other tools, e.g. MinIO, live there too and are not checked)
OUR_TOOLS = {"kind", "kubectl", "helm", "kubeadm", "crictl", *NODE_PROCESSES}


def processes() -> list[tuple[int, str, str, str]]:
    """(pid, comm, cmdline, cgroup) of every process on the host."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            comm = (d / "comm").read_text().strip()
            cmdline = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cgroup = (d / "cgroup").read_text()
        except OSError:
            continue
        out.append((int(d.name), comm, cmdline, cgroup))
    return out


def ours(cmdline: str) -> bool:
    exe = Path(cmdline.split(" ")[0])
    return exe.parent == CACHE / "bin" and exe.name in OUR_TOOLS


@pytest.mark.skipif(os.environ.get("REEL_CLUSTER_TEARDOWN") != "1",
                    reason="deletes the cluster: set REEL_CLUSTER_TEARDOWN=1 (make test-cluster does)")
def test_cluster_down_leaves_no_container_network_volume_or_process():
    provider_cli = "docker" if provider() == "docker" else "podman"

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([provider_cli, *args], capture_output=True, text=True)

    node = cli("inspect", "-f", "{{.Id}}", NODE)
    assert node.returncode == 0, f"expected the node container {NODE} to exist before cluster-down"
    node_id = node.stdout.strip()
    volumes = cli("inspect", "-f", '{{range .Mounts}}{{if eq .Type "volume"}}{{.Name}} {{end}}{{end}}',
                  NODE).stdout.split()
    assert any(node_id in cg for _, _, _, cg in processes()), "no process runs in the node container?"

    down = subprocess.run(["make", "-C", str(REPO), "cluster-down"], capture_output=True, text=True)
    assert down.returncode == 0, down.stdout + down.stderr

    label = f"label=io.x-k8s.kind.cluster={CLUSTER}"
    assert cli("ps", "-aq", "--filter", label).stdout.strip() == "", "a node container is left"
    assert cli("inspect", NODE).returncode != 0, f"container {NODE} still exists"
    for v in volumes:
        assert cli("volume", "inspect", v).returncode != 0, f"volume {v} of the node is left"
    if provider_cli == "podman":
        assert cli("network", "exists", NETWORK).returncode != 0, f"podman network {NETWORK} is left"
        names = cli("network", "ls", "--format", "{{.Name}}").stdout.split()
        assert not [n for n in names if CLUSTER in n or n == "kind"], names
    kind_clusters = subprocess.run([str(CACHE / "bin" / "kind"), "get", "clusters"],
                                   capture_output=True, text=True, env={**os.environ,
                                   "KIND_EXPERIMENTAL_PROVIDER": provider()}).stdout.split()
    assert CLUSTER not in kind_clusters

    # Other clusters of ours (another REEL_CLUSTER) may be running: what must be gone is what ran in
    # this node container, and any Kubernetes process in the cgroup of a container that no longer exists.
    existing = set(cli("ps", "-aq", "--no-trunc").stdout.split())

    def orphan(cg: str) -> bool:
        ids = re.findall(r"(?:libpod-|docker[-/])([0-9a-f]{64})", cg)
        return bool(ids) and not any(i in existing for i in ids)

    left = [(pid, comm, cmd[:120]) for pid, comm, cmd, cg in processes()
            if node_id in cg or node_id in cmd                       # in the node's cgroups / its conmon
            or (comm in NODE_PROCESSES and orphan(cg))               # in a container that is gone
            or ours(cmd)]                                           # our tools still running
    assert not left, f"processes of the cluster are left: {left}"
    kubeconfig = CACHE / ("kubeconfig" if CLUSTER == "reel" else f"kubeconfig-{CLUSTER}")
    assert not kubeconfig.exists(), "the kubeconfig of a deleted cluster is left"
