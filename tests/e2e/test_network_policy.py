"""The chart's recorder NetworkPolicy (networkPolicy.enabled, templates/network-policy.yaml) enforced on kind.

With the policy on, a session records a Janus participant (RTP from the Janus pod, WebSocket to it, uploads to
MinIO, status to the API server, DNS), while a pod outside the allowed set sprays forged RTP at every UDP port
the recorder pod listens on, and at one it does not. Nothing arrives, measured twice: in the recorder pod's own
network namespace (the kernel's UDP counters, /proc/net/snmp: a datagram to a closed port counts as NoPorts) and
by the recorder (its RTP gate counts packets from other sources as packetsRejected, in status.participants).
The control: the policy deleted, the same pod's packets, from the same script, reach the same address and ports
(NoPorts and packetsRejected go up): the first half proved enforcement, not a wrong address. The recording is
whole either way (the recorder's own source filter keeps forged packets out of it).

The kind cluster enforces NetworkPolicy for this test: with podman, ``hack/kind/cluster.sh netpol-on`` runs
kube-router's policy controller, and ``netpol-off`` removes it and its rules afterwards (left on, it would make
connections to a Service without endpoints hang instead of being refused, which other tests rely on); with
docker, kind's kindnetd enforces it always (both commands do nothing).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
from tests.support.analyze import decode_segments

from .kit import HARDENED, IMAGES, REPO, download, manifest_of, session_spec, wait_for

ROOM = 1001
SPRAY = 200  # datagrams per port
SCRIPT = (Path(__file__).resolve().parents[1] / "support" / "rtp_spray.py").read_text()
RTP_PORTS = range(40000, 45000)  # reel_recorder.ingest.rtp.PortAllocator's range, the policy's UDP ports


def cluster_sh(kit, command: str) -> None:
    r = subprocess.run([str(REPO / "hack" / "kind" / "cluster.sh"), command], capture_output=True, text=True,
                       timeout=600, env={**kit.env, "REEL_CLUSTER": os.environ.get("REEL_CLUSTER", "reel")})
    assert r.returncode == 0, f"hack/kind/cluster.sh {command} failed:\n{r.stderr[-3000:]}"


@pytest.fixture
def enforced(kit):
    """NetworkPolicy enforced on the cluster while the test runs."""
    cluster_sh(kit, "netpol-on")
    try:
        yield
    finally:
        cluster_sh(kit, "netpol-off")


@pytest.fixture
def guarded(kit, images, crds, enforced, request):
    """A namespace with the chart installed, its NetworkPolicy on (Janus and MinIO pods as peers), Janus, MinIO."""
    ns = kit.create_namespace("reel-netpol")
    try:
        kit.helm_install("reel", ns, values={"networkPolicy": {
            "enabled": True,
            "roomServers": [{"podSelector": {"matchLabels": {"app": "janus"}}}],
            "stores": [{"podSelector": {"matchLabels": {"app": "minio"}}}],
            "storePorts": [{"port": 9000, "protocol": "TCP"}]}})
        server, endpoint = kit.deploy_room_and_store(ns, [ROOM])
        yield ns, server, endpoint
    finally:
        if getattr(getattr(request.node, "rep_call", None), "failed", True):
            print(kit.dump(ns))
        kit.kubectl("delete", "recs", "--all", "-n", ns, "--timeout=120s", check=False)
        kit.helm_uninstall("reel", ns)
        kit.delete_namespace(ns, wait=False)


def start_intruder(kit, ns: str) -> str:
    """A pod no policy peer matches (label app=intruder), with Python: the publisher image, idle."""
    kit.apply(ns, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "intruder", "labels": {"app": "intruder"}},
                   "spec": {"restartPolicy": "Never", "containers": [{
                       "name": "intruder", "image": IMAGES["publisher"], "imagePullPolicy": "Never",
                       "command": ["sleep", "3600"], "securityContext": HARDENED}]}})
    kit.kubectl("wait", "--for=condition=Ready", "pod/intruder", "-n", ns, "--timeout=120s")
    return "intruder"


def spray(kit, ns: str, host: str, ports: list[int], count: int = SPRAY) -> int:
    out = kit.kubectl("exec", "-i", "-n", ns, "intruder", "--", "python3", "-", host, str(count),
                      *map(str, ports), input=SCRIPT, timeout=120).stdout
    result = json.loads(out.strip().splitlines()[-1])
    return result["sent"]


def in_pod(kit, ns: str, pod, path: str) -> str:
    return kit.kubectl("exec", "-n", ns, pod.metadata.name, "-c", pod.spec.containers[0].name, "--", "cat",
                       path).stdout


def udp_counters(kit, ns: str, pod) -> dict[str, int]:
    """The kernel's UDP counters of the pod's network namespace (/proc/net/snmp, the two ``Udp:`` lines)."""
    names, values = [line.split()[1:] for line in in_pod(kit, ns, pod, "/proc/net/snmp").splitlines()
                     if line.startswith("Udp:")]
    return dict(zip(names, map(int, values), strict=True))


def bound_ports(kit, ns: str, pod) -> set[int]:
    """UDP ports in the recorder's RTP range that the pod's sockets are bound to on its own address (or all):
    what Janus sends to (/proc/net/udp; the demuxers' sockets on 127.0.0.1 are left out)."""
    reachable = {socket.inet_aton(pod.status.pod_ip), socket.inet_aton("0.0.0.0")}
    ports = set()
    for line in in_pod(kit, ns, pod, "/proc/net/udp").splitlines()[1:]:
        addr, port = line.split()[1].split(":")
        if int(port, 16) in RTP_PORTS and bytes.fromhex(addr)[::-1] in reachable:  # little-endian hex
            ports.add(int(port, 16))
    return ports


def rejected(kit, ns: str, name: str) -> int:
    parts = ((kit.session(ns, name) or {}).get("status") or {}).get("participants") or []
    return sum(p.get("packetsRejected", 0) for p in parts)


def test_policy_keeps_other_pods_out_of_a_recording_and_lets_janus_in(kit, guarded, tmp_path):
    ns, server, endpoint = guarded
    policy = json.loads(kit.kubectl("get", "networkpolicy", "reel-recorder", "-n", ns, "-o", "json").stdout)
    api = [peer["ipBlock"]["cidr"] for peer in policy["spec"]["egress"][-1]["to"]]
    assert api, "the chart found no API server address (Helm lookup)"
    start_intruder(kit, ns)
    pub = kit.start_publisher(ns, "alice", ROOM)
    kit.wait_published(ns, pub)
    kit.create_session(ns, "guarded", session_spec(server, ROOM, endpoint=endpoint))
    wait_for(lambda: (kit.session(ns, "guarded").get("status") or {}).get("activeParticipants") == 1, 120,
             "the participant recorded through the policy")
    # a segment stored in MinIO: Janus's RTP came in, the upload went out (and the status reached the API server)
    def stored() -> int:
        upload = (kit.session(ns, "guarded").get("status") or {}).get("upload") or {}
        return upload.get("segments", 0) - upload.get("pendingSegments", 0)
    wait_for(lambda: stored() > 0, 60, "a segment stored", interval=1)
    rec, = kit.recorder_pods(ns, "guarded")
    ip = rec.status.pod_ip
    listening = sorted(bound_ports(kit, ns, rec))
    assert listening, "the recorder listens on no RTP port"
    closed = next(p for p in RTP_PORTS if p not in listening and p % 2 == 0 and p + 1 not in listening)
    targets = [*listening, closed]

    # with the policy: nothing reaches the recorder pod's network namespace, nothing reaches its RTP gate
    before = udp_counters(kit, ns, rec)
    sent = spray(kit, ns, ip, targets)
    assert sent == SPRAY * len(targets)
    time.sleep(2)
    after = udp_counters(kit, ns, rec)
    blocked_noports = after["NoPorts"] - before["NoPorts"]
    time.sleep(4)  # the recorder reports its counts every 2 s when they change
    assert blocked_noports == 0, (before, after)
    assert rejected(kit, ns, "guarded") == 0

    # control: the policy deleted, the same pod's datagrams to the same address and ports arrive
    kit.kubectl("delete", "networkpolicy", "reel-recorder", "-n", ns)
    t0 = time.monotonic()

    def arrives() -> bool:
        b = udp_counters(kit, ns, rec)["NoPorts"]
        spray(kit, ns, ip, [closed], count=5)
        time.sleep(0.5)
        return udp_counters(kit, ns, rec)["NoPorts"] > b
    wait_for(arrives, 60, "datagrams to the recorder pod once the policy is gone", interval=1)
    lifted = time.monotonic() - t0
    before = udp_counters(kit, ns, rec)
    sent = spray(kit, ns, ip, targets)
    time.sleep(2)
    after = udp_counters(kit, ns, rec)
    open_noports = after["NoPorts"] - before["NoPorts"]
    assert SPRAY * 0.9 <= open_noports <= SPRAY, (before, after)  # UDP: a few may be lost, most arrive
    wait_for(lambda: rejected(kit, ns, "guarded") > 0, 30, "the recorder's gate rejecting the intruder's packets")

    kit.stop_session(ns, "guarded")
    obj = kit.wait_phase(ns, "guarded", {"Completed", "BackedUp", "Failed"}, 240)
    status = obj["status"]
    assert status["phase"] == "Completed", status
    with kit.s3(ns) as s3:
        manifest = manifest_of(s3, "recordings", status["manifest"])
        part, = manifest["participants"]
        keys = [s["key"] for s in part["segments"]]
        decoded = decode_segments(download(s3, "recordings", keys, tmp_path / "dl"))
    assert decoded.decode_errors == 0 and decoded.video_frames > 10 * 20, decoded
    gate = part.get("packetsRejected", 0)
    assert gate > 0, part  # the control's packets, and only those: the first spray got none in
    print(f"recorder {ip} ports {listening}: with the policy {blocked_noports} of {SPRAY} datagrams to the closed "
          f"port {closed} arrived and the gate rejected 0; policy lifted in {lifted:.1f} s, then {open_noports} of "
          f"{SPRAY} arrived and the gate rejected {gate} of {SPRAY * len(listening)} sent at its ports; "
          f"recording: {decoded.video_frames} video frames, no decode error")
