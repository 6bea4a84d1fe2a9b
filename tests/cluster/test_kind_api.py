"""The kind cluster's API server: CRD schema + CEL validation + status subresource, RBAC."""

from __future__ import annotations

import json
import uuid

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

pytestmark = pytest.mark.cluster

GROUP = "clustertest.reel.dev"
CEL_MESSAGE = "minReplicas must not be greater than replicas"


@pytest.fixture
def crd(kube, wait_for):
    plural = f"widgets{uuid.uuid4().hex[:6]}"
    name = f"{plural}.{GROUP}"
    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "required": ["replicas"],
                "properties": {
                    "replicas": {"type": "integer", "minimum": 0},
                    "minReplicas": {"type": "integer", "minimum": 0},
                },
                "x-kubernetes-validations": [
                    {"rule": "!has(self.minReplicas) || self.minReplicas <= self.replicas",
                     "message": CEL_MESSAGE},
                ],
            },
            "status": {"type": "object", "properties": {"phase": {"type": "string"}}},
        },
    }
    body = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": name},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": plural[:-1], "kind": "Widget" + plural[7:].upper(),
                      "listKind": "Widget" + plural[7:].upper() + "List"},
            "versions": [{"name": "v1", "served": True, "storage": True,
                          "schema": {"openAPIV3Schema": schema},
                          "subresources": {"status": {}}}],
        },
    }
    kube.apiext.create_custom_resource_definition(body)

    def established():
        conds = kube.apiext.read_custom_resource_definition(name).status.conditions or []
        return any(c.type == "Established" and c.status == "True" for c in conds)

    wait_for(established, 60, f"CRD {name} Established")
    yield plural, body["spec"]["names"]["kind"]
    kube.apiext.delete_custom_resource_definition(name)


def test_crd_cel_rule_refuses_an_invalid_object_and_status_is_a_subresource(kube, namespace, crd):
    plural, kind = crd
    obj = {"apiVersion": f"{GROUP}/v1", "kind": kind, "metadata": {"name": "ok"},
           "spec": {"replicas": 2, "minReplicas": 1}}
    kube.custom.create_namespaced_custom_object(GROUP, "v1", namespace, plural, obj)

    bad = {"apiVersion": f"{GROUP}/v1", "kind": kind, "metadata": {"name": "bad"},
           "spec": {"replicas": 1, "minReplicas": 3}}
    with pytest.raises(ApiException) as refused:
        kube.custom.create_namespaced_custom_object(GROUP, "v1", namespace, plural, bad)
    assert refused.value.status == 422
    assert CEL_MESSAGE in json.loads(refused.value.body)["message"]

    # the OpenAPI schema is enforced too
    schema_bad = dict(bad, metadata={"name": "bad2"}, spec={"replicas": -1})
    with pytest.raises(ApiException) as refused:
        kube.custom.create_namespaced_custom_object(GROUP, "v1", namespace, plural, schema_bad)
    assert refused.value.status == 422

    # status subresource: the main resource ignores status, /status ignores spec
    kube.custom.patch_namespaced_custom_object(GROUP, "v1", namespace, plural, "ok",
                                               {"status": {"phase": "Ignored"}})
    got = kube.custom.get_namespaced_custom_object(GROUP, "v1", namespace, plural, "ok")
    assert "status" not in got
    kube.custom.patch_namespaced_custom_object_status(
        GROUP, "v1", namespace, plural, "ok", {"status": {"phase": "Ready"}, "spec": {"replicas": 9}})
    got = kube.custom.get_namespaced_custom_object(GROUP, "v1", namespace, plural, "ok")
    assert got["status"] == {"phase": "Ready"}
    assert got["spec"]["replicas"] == 2


def test_service_account_limited_by_a_role_is_refused_what_the_role_does_not_grant(kube, namespace):
    kube.core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="limited")))
    kube.rbac.create_namespaced_role(namespace, client.V1Role(
        metadata=client.V1ObjectMeta(name="pod-reader"),
        rules=[client.V1PolicyRule(api_groups=[""], resources=["pods"], verbs=["get", "list"])]))
    kube.rbac.create_namespaced_role_binding(namespace, client.V1RoleBinding(
        metadata=client.V1ObjectMeta(name="limited-reads-pods"),
        role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name="pod-reader"),
        subjects=[client.RbacV1Subject(kind="ServiceAccount", name="limited", namespace=namespace)]))

    # a real token of the ServiceAccount (TokenRequest), used against the API server
    token = kube.core.create_namespaced_service_account_token(
        "limited", namespace, client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600))).status.token
    cfg = client.Configuration()
    cfg.host = kube.api.configuration.host
    cfg.ssl_ca_cert = kube.api.configuration.ssl_ca_cert
    cfg.api_key = {"authorization": f"Bearer {token}"}
    limited = client.CoreV1Api(client.ApiClient(cfg))

    assert limited.list_namespaced_pod(namespace).items == []  # granted by the Role

    refusals = {
        "list secrets": lambda: limited.list_namespaced_secret(namespace),
        "create a pod": lambda: limited.create_namespaced_pod(namespace, client.V1Pod(
            metadata=client.V1ObjectMeta(name="nope"),
            spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="none")]))),
        "list pods in kube-system": lambda: limited.list_namespaced_pod("kube-system"),
        "list nodes": lambda: limited.list_node(),
    }
    for what, call in refusals.items():
        with pytest.raises(ApiException) as refused:
            call()
        assert refused.value.status == 403, f"{what}: {refused.value.status} {refused.value.reason}"
        assert "system:serviceaccount:" + namespace + ":limited" in refused.value.body, what

    # the authorizer agrees (SubjectAccessReview)
    def allowed(verb, resource, ns=namespace):
        review = client.V1SubjectAccessReview(spec=client.V1SubjectAccessReviewSpec(
            user=f"system:serviceaccount:{namespace}:limited",
            groups=["system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"],
            resource_attributes=client.V1ResourceAttributes(namespace=ns, verb=verb, resource=resource)))
        return client.AuthorizationV1Api(kube.api).create_subject_access_review(review).status.allowed

    assert allowed("list", "pods")
    assert not allowed("delete", "pods")
    assert not allowed("get", "secrets")
