"""Where a session may point, on kind: the chart's ValidatingAdmissionPolicy refuses sessions aimed at cloud
metadata or the API server (and S3 stores without credentials) with a message naming the field; a name that
passes admission but resolves, in the cluster's DNS, to the API server's address fails EndpointNotAllowed
from the operator before any pod exists. No Janus or MinIO needed: nothing here is ever recorded."""

from __future__ import annotations

import pytest
from kubernetes.client.rest import ApiException

from .kit import wait_for


@pytest.fixture
def ns(kit, images, crds, request):
    name = kit.create_namespace("reel-adm")
    try:
        kit.helm_install("reel", name)
        yield name
    finally:
        failed = getattr(getattr(request.node, "rep_call", None), "failed", True)
        if failed:
            print(kit.dump(name))
        kit.helm_uninstall("reel", name)
        kit.delete_namespace(name, wait=False)


def spec(server: str, endpoint: str = "http://minio.example.com:9000", creds: bool = True) -> dict:
    storage = {"bucket": "recordings", "endpoint": endpoint}
    if creds:
        storage["credentialsSecretRef"] = {"name": "s3"}
    return {"room": {"server": server, "id": 1}, "storage": storage}


def refused(kit, ns: str, name: str, body: dict) -> str:
    with pytest.raises(ApiException) as err:
        kit.create_session(ns, name, body)
    assert err.value.status in (403, 422), err.value
    assert kit.session(ns, name) is None
    return err.value.body


@pytest.mark.parametrize(("server", "endpoint", "words"), [
    ("ws://169.254.169.254:80", None, "spec.room.server: host 169.254.169.254 is a denied address (in 169.254.0.0/16)"),
    ("wss://kubernetes.default.svc:443", None, 'spec.room.server: host \\"kubernetes.default.svc\\" is a denied name'),
    ("ws://janus.example.com:8188", "http://169.254.169.254/latest/meta-data",
     "spec.storage.endpoint: host 169.254.169.254 is a denied address"),
    ("ws://[::1]:8188", None, "spec.room.server: host ::1 is a denied address (in ::1/128)"),
    ("ws://2130706433:8188", None, "is neither a host name nor a plain IP address"),
])
def test_admission_refuses_sessions_aimed_at_metadata_or_the_api_server(kit, ns, server, endpoint, words):
    body = refused(kit, ns, "bad", spec(server, **({"endpoint": endpoint} if endpoint else {})))
    assert "ValidatingAdmissionPolicy" in body and words in body, body
    assert "sessions may not point at loopback, link-local (cloud metadata) or the API server" in body, body


def test_admission_refuses_a_webhook_aimed_at_metadata_also_when_edited_in(kit, ns):
    hook = {"webhook": {"url": "http://169.254.169.254/latest/meta-data", "secretRef": {"name": "h", "key": "k"}}}
    body = refused(kit, ns, "hook", {**spec("ws://janus.example.com:8188"), "notify": hook})
    assert "spec.notify.webhook.url: host 169.254.169.254 is a denied address" in body, body
    kit.create_session(ns, "hook", spec("ws://janus.example.com:8188"))
    with pytest.raises(ApiException) as err:  # notify may change while recording: the rule applies to edits too
        kit.custom.patch_namespaced_custom_object("reel.dev", "v1alpha1", ns, "recordingsessions", "hook",
                                                  {"spec": {"notify": hook}})
    assert "spec.notify.webhook.url" in err.value.body, err.value.body


def test_admission_refuses_a_bucket_without_credentials(kit, ns):
    body = refused(kit, ns, "nocreds", spec("ws://janus.example.com:8188", creds=False))
    assert "needs credentialsSecretRef" in body and "recorder.allowAmbientCredentials" in body, body


def test_a_name_resolving_to_the_api_server_fails_endpoint_not_allowed(kit, ns):
    # passes admission (a name; names are not resolved there), resolves in the cluster to the API server's
    # ClusterIP (an ExternalName Service: a CNAME to kubernetes.default.svc.cluster.local)
    kit.apply(ns, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "janus-alias"},
                   "spec": {"type": "ExternalName", "externalName": "kubernetes.default.svc.cluster.local"}})
    api_ip = kit.core.read_namespaced_service("kubernetes", "default").spec.cluster_ip
    kit.create_session(ns, "alias", spec(f"wss://janus-alias.{ns}.svc.cluster.local:443"))
    session = kit.wait_phase(ns, "alias", {"Failed", "Starting", "Recording"}, timeout=120)
    status = session["status"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert status["phase"] == "Failed" and ready["reason"] == "EndpointNotAllowed", status
    assert f"spec.room.server: host 'janus-alias.{ns}.svc.cluster.local' resolves to {api_ip}" in status["message"]
    assert not kit.recorder_pods(ns, "alias")
    events = kit.kubectl("get", "events", "-n", ns, "--field-selector", "involvedObject.name=alias",
                         "-o", "jsonpath={.items[*].reason}").stdout
    assert "EndpointNotAllowed" in events or wait_for(
        lambda: "EndpointNotAllowed" in kit.kubectl("get", "events", "-n", ns, "-o",
                                                    "jsonpath={.items[*].reason}").stdout, 30, "the Warning Event")
