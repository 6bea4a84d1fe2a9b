"""The chart's recorder NetworkPolicy (templates/network-policy.yaml, values networkPolicy) rendered: off by default;
on, one policy per recorder namespace that selects the pods the operator makes, takes UDP from the room servers on
the recorder's RTP port range only, and lets out only room servers, stores, DNS and the API server; refused
without peers or an API server address; values.schema.json refusing bad peers; Helm's lookup finding the API
server; the API server accepting the rendering. Enforcement on a cluster: tests/e2e/test_network_policy.py."""

from __future__ import annotations

import inspect
import json
import subprocess

import pytest
import yaml
from tests.cluster.test_chart import CHART, _kubectl, assert_schema_refuses, helm

from reel_api import load_session
from reel_operator import names
from reel_recorder.ingest.rtp import PortAllocator

POLICY = "templates/network-policy.yaml"
PEERS = ["--set", "networkPolicy.enabled=true",
         "--set", "networkPolicy.roomServers[0].podSelector.matchLabels.app=janus",
         "--set", "networkPolicy.roomServers[1].ipBlock.cidr=203.0.113.10/32",
         "--set", "networkPolicy.stores[0].namespaceSelector.matchLabels.team=storage",
         "--set", "networkPolicy.stores[0].podSelector.matchLabels.app=minio",
         "--set", "networkPolicy.storePorts[0].port=9000", "--set", "networkPolicy.storePorts[0].protocol=TCP"]
ON = [*PEERS, "--set", "endpointPolicy.apiServerAddresses={10.96.0.1,172.18.0.2}"]


def render(kube, *values: str, check: bool = True):
    proc = helm(kube, "template", "t", str(CHART), "-n", "reel-x", *values, "--show-only", POLICY, check=check)
    return [d for d in yaml.safe_load_all(proc.stdout) if d] if check else proc


def recorder_labels() -> dict[str, str]:
    session = load_session({"apiVersion": "reel.dev/v1alpha1", "kind": "RecordingSession",
                            "metadata": {"name": "s", "namespace": "media", "uid": "u-1", "generation": 1},
                            "spec": {"room": {"server": "ws://janus:8188", "id": 1},
                                     "storage": {"bucket": "recordings", "endpoint": "http://minio:9000"}}})
    return names.labels(session)


def test_off_by_default(kube):
    proc = helm(kube, "template", "t", str(CHART), "-n", "reel-x")
    assert "kind: NetworkPolicy" not in proc.stdout


def test_policy_shape(kube):
    policy, = render(kube, *ON)
    spec = policy["spec"]
    assert policy["kind"] == "NetworkPolicy" and policy["metadata"]["namespace"] == "reel-x"
    # it selects the operator's recorder pods, and nothing but them (not the operator: component=operator)
    selector = spec["podSelector"]["matchLabels"]
    assert selector.items() <= recorder_labels().items() and "reel-recorder" in selector.values()
    assert sorted(spec["policyTypes"]) == ["Egress", "Ingress"]
    # ingress: UDP from the room servers, on exactly the ports the recorder binds
    alloc = inspect.signature(PortAllocator.__init__).parameters
    rule, = spec["ingress"]
    assert rule["from"] == [{"podSelector": {"matchLabels": {"app": "janus"}}},
                            {"ipBlock": {"cidr": "203.0.113.10/32"}}]
    assert rule["ports"] == [{"protocol": "UDP", "port": alloc["first"].default, "endPort": alloc["last"].default}]
    # egress: room servers (every port: WebSocket, the forwarders' RTCP ports), stores, DNS, API server; no rule
    # without peers (an empty `to` would allow every destination)
    janus, stores, dns, api = spec["egress"]
    assert all(r["to"] for r in spec["egress"])
    assert janus == {"to": rule["from"]}
    assert stores == {"to": [{"namespaceSelector": {"matchLabels": {"team": "storage"}},
                              "podSelector": {"matchLabels": {"app": "minio"}}}],
                      "ports": [{"port": 9000, "protocol": "TCP"}]}
    assert dns["to"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                          "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}]
    assert dns["ports"] == [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
    assert api == {"to": [{"ipBlock": {"cidr": "10.96.0.1/32"}}, {"ipBlock": {"cidr": "172.18.0.2/32"}}],
                   "ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 6443}]}


@pytest.mark.parametrize(("values", "namespaces"), [
    ([], ["reel-x"]),
    (["--set", "watchNamespaces={media,other}"], ["media", "other"]),
    (["--set", "watchNamespaces={media}", "--set", "networkPolicy.namespaces={rec-a,rec-b}"], ["rec-a", "rec-b"]),
], ids=["clusterwide-release-namespace", "watched", "listed"])
def test_one_policy_per_recorder_namespace(kube, values, namespaces):
    assert [p["metadata"]["namespace"] for p in render(kube, *ON, *values)] == namespaces


@pytest.mark.parametrize(("values", "message"), [
    (["--set", "networkPolicy.enabled=true"], "set networkPolicy.roomServers"),
    (["--set", "networkPolicy.enabled=true", "--set", "networkPolicy.roomServers[0].podSelector.matchLabels.app=janus"],
     "set networkPolicy.stores"),
    ([*ON, "--set", "endpointPolicy.apiServerAddresses=null"], "the API server's address is unknown"),
], ids=["no-room-servers", "no-stores", "no-api-server"])
def test_refused_without_peers(kube, values, message):
    proc = render(kube, *values, check=False)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr


@pytest.mark.parametrize(("values", "where"), [
    (["--set", "networkPolicy.roomServers[0].ipBlock.cidr=10.0.0.0/8",
         "--set", "networkPolicy.roomServers[0].podSelector.matchLabels.app=janus"], "/networkPolicy/roomServers/0"),
    (["--set", "networkPolicy.stores[0].ipBlock.cidr=somewhere"], "/networkPolicy/stores/0/ipBlock/cidr"),
    (["--set", "networkPolicy.stores[0].podSelectr.matchLabels.app=minio"], "/networkPolicy/stores/0"),
    (["--set", "networkPolicy.storePorts[0].protocol=ICMP"], "/networkPolicy/storePorts/0/protocol"),
    (["--set", "networkPolicy.dns={}"], "/networkPolicy/dns"),
    (["--set", "networkPolicy.dns=null"], "/networkPolicy"),  # a value set to null is removed: required
    (["--set", "networkPolicy.apiServerPorts={0}"], "/networkPolicy/apiServerPorts/0"),
    (["--set", "networkPolicy.enable=true"], "/networkPolicy"),
], ids=["ipblock-and-selector", "bad-cidr", "typo-selector", "bad-protocol", "no-dns", "null-dns", "bad-port",
                                 "typo"])
def test_schema_refuses_bad_values(kube, values, where):
    assert_schema_refuses(kube, values, where)


def test_lookup_finds_the_api_server_and_the_api_server_accepts_the_policy(kube, namespace):
    """Against the cluster (--dry-run=server: Helm's lookup works), without apiServerAddresses: the policy lets
    recorders reach the kubernetes Service's ClusterIP and the API server's own addresses."""
    proc = helm(kube, "template", "t", str(CHART), "-n", namespace, *PEERS, "--dry-run=server", "--show-only", POLICY)
    policy, = [d for d in yaml.safe_load_all(proc.stdout) if d]
    cidrs = {peer["ipBlock"]["cidr"] for peer in policy["spec"]["egress"][-1]["to"]}
    svc = json.loads(kube.kubectl("get", "svc", "kubernetes", "-n", "default", "-o", "json").stdout)
    slice_ = json.loads(kube.kubectl("get", "endpointslice", "kubernetes", "-n", "default", "-o", "json").stdout)
    expected = {f"{ip}/32" for ip in svc["spec"]["clusterIPs"]}
    expected |= {f"{ip}/32" for ep in slice_["endpoints"] for ip in ep["addresses"]}
    assert cidrs == expected, (cidrs, expected)
    applied = subprocess.run([_kubectl(), "--kubeconfig", str(kube.kubeconfig), "apply", "--dry-run=server",
                              "-f", "-"], input=proc.stdout, capture_output=True, text=True, timeout=120)
    assert applied.returncode == 0 and "(server dry run)" in applied.stdout, applied.stderr
