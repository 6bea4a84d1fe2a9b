"""The chart's MutatingAdmissionPolicy (templates/session-finalizer.yaml): rendered only where the API server has
the API, with the operator's own finalizer name, bound like the endpoint policy; and on the kind cluster a new
session in a bound namespace comes back from its create request with the finalizer, one elsewhere without. What the
operator does with such a session (starts it from kopf's create handler, its label in kopf's patch): the e2e tests,
which install the chart, and tests/unit/test_operator_event_loop.py."""

from __future__ import annotations

import subprocess
import uuid
from contextlib import suppress

import pytest
import yaml
from kubernetes.client.rest import ApiException
from tests.cluster.test_chart import (
    CHART,
    _kubectl,
    assert_schema_refuses,
    chart_crds,  # noqa: F401 (a fixture: pytest finds it by name)
    helm,
)

from reel_api import GROUP, PLURAL, VERSION
from reel_operator.settings import FINALIZER

TEMPLATE = "templates/session-finalizer.yaml"
MAP_API = ["--api-versions", "admissionregistration.k8s.io/v1/MutatingAdmissionPolicy"]


def render(kube, *values: str, release: str = "t") -> list[dict]:
    proc = helm(kube, "template", release, str(CHART), "-n", "reel-x", *values, check=False)
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d and d["kind"].startswith("MutatingAdmissionPolicy")]


def test_rendered_with_the_operators_finalizer_and_bound_like_the_endpoint_policy(kube):
    policy, binding = render(kube, *MAP_API)
    assert (policy["kind"], binding["kind"]) == ("MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding")
    assert binding["spec"]["policyName"] == policy["metadata"]["name"] == "t-reel-session-finalizer.reel-x"
    assert policy["spec"]["failurePolicy"] == "Ignore"  # it saves the operator work, it never refuses a session
    rule, = policy["spec"]["matchConstraints"]["resourceRules"]
    assert (rule["apiGroups"], rule["resources"], rule["operations"]) == ([GROUP], [PLURAL], ["CREATE"])
    mutation, = policy["spec"]["mutations"]
    assert f'finalizers: ["{FINALIZER}"]' in mutation["applyConfiguration"]["expression"]
    assert "matchResources" not in binding["spec"]  # every namespace, as the operator watches them all
    _, binding = render(kube, *MAP_API, "--set", "watchNamespaces={media,other}")
    assert binding["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"] == [
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["media", "other"]}]


def test_not_rendered_without_the_api_or_when_switched_off(kube):
    assert render(kube) == []  # helm's offline default API list has no MutatingAdmissionPolicy: the operator adds it
    assert render(kube, *MAP_API, "--set", "admissionFinalizer=false") == []
    assert_schema_refuses(kube, ["--set", "admissionFinalizer=sometimes"], "/admissionFinalizer")


@pytest.mark.usefixtures("chart_crds")
def test_a_session_is_admitted_with_the_finalizer_only_where_the_policy_is_bound(kube, namespace, wait_for):
    release = f"fin-{uuid.uuid4().hex[:6]}"
    manifest = helm(kube, "template", release, str(CHART), "-n", namespace, "--show-only", TEMPLATE, "--validate",
                    "--set", f"watchNamespaces={{{namespace}}}").stdout  # --validate: the cluster's APIs
    assert "kind: MutatingAdmissionPolicy" in manifest, "the kind cluster should serve the API (Kubernetes >= 1.36)"
    apply = subprocess.run([_kubectl(), "--kubeconfig", str(kube.kubeconfig), "apply", "-f", "-"], input=manifest,
                           capture_output=True, text=True, timeout=120)
    assert apply.returncode == 0, apply.stderr
    other = f"reel-t-{uuid.uuid4().hex[:8]}"
    kube.kubectl("create", "namespace", other)

    def create(ns: str, name: str) -> dict:
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "RecordingSession", "metadata": {"name": name},
                "spec": {"room": {"server": "ws://janus.media.svc:8188", "id": 1},
                         "storage": {"local": {"path": "/recordings"}}}}
        return kube.custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body,
                                                           dry_run="All")  # admitted, mutated, not stored

    try:
        # the policy reaches the API server's admission through an informer: a moment after it is created
        wait_for(lambda: FINALIZER in (create(namespace, "probe")["metadata"].get("finalizers") or []), 60,
                 "the policy in effect")
        admitted = create(namespace, "a")
        assert admitted["metadata"]["finalizers"] == [FINALIZER]
        assert "finalizers" not in create(other, "b")["metadata"]  # not bound there
    finally:
        subprocess.run([_kubectl(), "--kubeconfig", str(kube.kubeconfig), "delete", "--ignore-not-found", "-f", "-"],
                       input=manifest, capture_output=True, text=True, timeout=120)
        with suppress(ApiException):
            kube.core.delete_namespace(other)


@pytest.mark.parametrize("values", [[], ["--set", "watchNamespaces={media}"]], ids=["cluster-wide", "namespaced"])
def test_the_api_server_accepts_every_rendering(kube, values):
    rendered = helm(kube, "template", "t", str(CHART), "-n", "reel-x", *MAP_API, *values, "--show-only",
                    TEMPLATE).stdout
    proc = subprocess.run([_kubectl(), "--kubeconfig", str(kube.kubeconfig), "apply", "--dry-run=server", "-f", "-"],
                          input=rendered, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr  # CEL that does not compile is refused here
    assert proc.stdout.count("(server dry run)") == 2, proc.stdout
