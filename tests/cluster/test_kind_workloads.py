"""Workloads on the kind cluster: a podman/docker-built image runs, the garbage collector, networking."""

from __future__ import annotations

import json

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

pytestmark = pytest.mark.cluster


def test_image_built_here_runs_and_logs_are_read_through_the_api(kube, namespace, test_image, make_pod):
    kube.core.create_namespaced_pod(namespace, make_pod("hello", test_image, ["hello"]))
    kube.wait_pod_phase(namespace, "hello", ("Succeeded",))
    logs = kube.core.read_namespaced_pod_log("hello", namespace)
    assert "reel-cluster-test hello from Python 3.11" in logs
    status = kube.core.read_namespaced_pod("hello", namespace).status.container_statuses[0]
    assert status.image.endswith("reel-cluster-test:1")
    assert status.state.terminated.exit_code == 0


def test_deleting_the_owner_deletes_the_owned_pod(kube, namespace, test_image, make_pod, wait_for):
    owner = kube.core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"), data={"k": "v"}))
    ref = client.V1OwnerReference(api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid,
                                  block_owner_deletion=True)
    owned = make_pod("owned", test_image, ["sleep"],
                     metadata=client.V1ObjectMeta(name="owned", owner_references=[ref]))
    kube.core.create_namespaced_pod(namespace, owned)
    kube.wait_pod_phase(namespace, "owned", ("Running",))

    kube.core.delete_namespaced_config_map("owner", namespace)

    def pod_gone():
        try:
            kube.core.read_namespaced_pod("owned", namespace)
        except ApiException as e:
            return e.status == 404
        return False

    wait_for(pod_gone, 120, "the garbage collector to delete the owned pod")


def test_pod_reaches_a_service_by_name_and_the_api_server(kube, namespace, test_image, make_pod, wait_for):
    labels = {"app": "echo"}
    server = make_pod(
        "echo", test_image, ["serve", "8080"],
        metadata=client.V1ObjectMeta(name="echo", labels=labels),
        container={"ports": [client.V1ContainerPort(container_port=8080)],
                   "readiness_probe": client.V1Probe(tcp_socket=client.V1TCPSocketAction(port=8080),
                                                     period_seconds=1)},
    )
    kube.core.create_namespaced_pod(namespace, server)
    kube.core.create_namespaced_service(namespace, client.V1Service(
        metadata=client.V1ObjectMeta(name="echo-svc"),
        spec=client.V1ServiceSpec(selector=labels, ports=[client.V1ServicePort(port=80, target_port=8080)])))
    kube.wait_pod_phase(namespace, "echo", ("Running",))

    def endpoint_ready():
        slices = client.DiscoveryV1Api(kube.api).list_namespaced_endpoint_slice(
            namespace, label_selector="kubernetes.io/service-name=echo-svc").items
        return any(ep.conditions.ready for s in slices for ep in (s.endpoints or []))

    wait_for(endpoint_ready, 120, "a ready endpoint behind echo-svc")

    kube.core.create_namespaced_pod(namespace, make_pod("probe", test_image, ["probe", "http://echo-svc/"]))
    kube.wait_pod_phase(namespace, "probe", ("Succeeded",), timeout=180)
    result = json.loads(kube.core.read_namespaced_pod_log("probe", namespace).strip().splitlines()[-1])

    assert result["service_status"] == 200, result
    assert result["service_body"].strip() == "reel-echo echo", result
    assert result["api_status"] == 200, result
    assert result["api_dns_status"] == 200, result
    server_version = client.VersionApi(kube.api).get_code().git_version
    assert result["api_version"] == server_version, result
    # in-cluster DNS answers cluster names only (no forwarding to resolvers outside the cluster)
    assert result["outside_name"].startswith("unresolved"), result
