"""The chart's ValidatingAdmissionPolicy (templates/admission-policy.yaml) rendered with default and custom
values: the lists rendered into its CEL and into the operator's environment agree, the binding follows
watchNamespaces, values.schema.json refuses bad entries, and the API server accepts (compiles) every
rendering. What it refuses on a live cluster: tests/e2e/test_session_admission.py."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml
from tests.cluster.test_chart import CHART, _kubectl, helm

from reel_operator.endpoints import DEFAULT_DENIED_CIDRS, DEFAULT_DENIED_HOSTS

POLICY = "templates/admission-policy.yaml"


def render(kube, *values: str, show: str | None = POLICY) -> list[dict]:
    args = ["template", "t", str(CHART), "-n", "reel-x", *values]
    if show:
        args += ["--show-only", show]
    return [d for d in yaml.safe_load_all(helm(kube, *args).stdout) if d]


def variables(policy: dict) -> dict[str, str]:
    return {v["name"]: v["expression"] for v in policy["spec"]["variables"]}


def operator_env(kube, *values: str) -> dict[str, str]:
    deploy = render(kube, *values, show="templates/deployment.yaml")[0]
    return {e["name"]: e.get("value") for e in deploy["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_default_values_render_the_default_lists_for_the_policy_and_the_operator(kube):
    policy, binding = render(kube)
    assert policy["kind"] == "ValidatingAdmissionPolicy" and binding["kind"] == "ValidatingAdmissionPolicyBinding"
    assert policy["metadata"]["name"] == binding["spec"]["policyName"] == "t-reel-session-endpoints.reel-x"
    assert binding["spec"]["validationActions"] == ["Deny"] and "matchResources" not in binding["spec"]
    v = variables(policy)
    assert json.loads(v["deniedCIDRs"]) == list(DEFAULT_DENIED_CIDRS)
    assert json.loads(v["deniedHosts"]) == list(DEFAULT_DENIED_HOSTS)
    assert json.loads(v["allowedHosts"]) == [] and json.loads(v["allowedCIDRs"]) == []
    assert "not an allowed host" not in v["problems"]  # no allow-list, no allow check
    assert len(policy["spec"]["validations"]) == 2  # endpoints + credentials
    env = operator_env(kube)
    assert env["REEL_DENIED_CIDRS"].split(",") == list(DEFAULT_DENIED_CIDRS)
    assert env["REEL_DENIED_HOSTS"].split(",") == list(DEFAULT_DENIED_HOSTS)
    assert env["REEL_ALLOWED_HOSTS"] == env["REEL_ALLOWED_CIDRS"] == ""
    assert env["REEL_ALLOW_AMBIENT_CREDENTIALS"] == "false"


CUSTOM = ["--set", "watchNamespaces={media,other}",
          "--set", "endpointPolicy.apiServerAddresses={10.96.0.1,fd00:10:96::1}",
          "--set", "endpointPolicy.allowedHosts={janus.media.svc,.s3.example.com}",
          "--set", "endpointPolicy.allowedCIDRs={10.244.0.0/16}",
          "--set", "endpointPolicy.deniedHosts={localhost}",
          "--set", "recorder.allowAmbientCredentials=true",
          "--set", "recorder.serviceAccountAnnotations.eks\\.amazonaws\\.com/role-arn=arn:aws:iam::1:role/rec"]


def test_custom_values_render_into_the_cel_and_the_operator_environment(kube):
    policy, binding = render(kube, *CUSTOM)
    v = variables(policy)
    assert json.loads(v["deniedCIDRs"]) == [*DEFAULT_DENIED_CIDRS, "10.96.0.1/32", "fd00:10:96::1/128"]
    assert json.loads(v["deniedHosts"]) == ["localhost"]
    assert json.loads(v["allowedHosts"]) == ["janus.media.svc", ".s3.example.com"]
    assert json.loads(v["allowedCIDRs"]) == ["10.244.0.0/16"]
    assert "not an allowed host or address" in v["problems"]
    assert "allowed: only hosts [janus.media.svc, .s3.example.com]" in policy["spec"]["validations"][0][
        "messageExpression"]
    assert len(policy["spec"]["validations"]) == 1  # ambient credentials allowed: no credentials rule
    assert binding["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"] == [
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["media", "other"]}]
    env = operator_env(kube, *CUSTOM)
    assert env["REEL_DENIED_CIDRS"].endswith(",10.96.0.1/32,fd00:10:96::1/128")
    assert env["REEL_ALLOWED_HOSTS"] == "janus.media.svc,.s3.example.com"
    assert env["REEL_ALLOWED_CIDRS"] == "10.244.0.0/16" and env["REEL_ALLOW_AMBIENT_CREDENTIALS"] == "true"
    assert json.loads(env["REEL_RECORDER_SERVICE_ACCOUNT_ANNOTATIONS"]) == {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/rec"}


def test_the_policy_can_be_switched_off(kube):
    proc = helm(kube, "template", "t", str(CHART), "--set", "endpointPolicy.admissionPolicy=false")
    kinds = {d["kind"] for d in yaml.safe_load_all(proc.stdout) if d}
    assert "ValidatingAdmissionPolicy" not in kinds and "Deployment" in kinds


@pytest.mark.parametrize(("value", "where"), [
    ("endpointPolicy.deniedCIDRs={10.0.0.0/33}", "/endpointPolicy/deniedCIDRs/0"),
    ("endpointPolicy.allowedCIDRs={nope}", "/endpointPolicy/allowedCIDRs/0"),
    ("endpointPolicy.allowedHosts={Janus.Media}", "/endpointPolicy/allowedHosts/0"),
    ("endpointPolicy.deniedHosts={a\"b}", "/endpointPolicy/deniedHosts/0"),  # nothing that could end a CEL string
    ("endpointPolicy.enabled=true", "/endpointPolicy"),
    ("recorder.allowAmbientCredentials=maybe", "/recorder/allowAmbientCredentials"),
])
def test_schema_refuses_bad_policy_values(kube, value, where):
    proc = helm(kube, "template", "t", str(CHART), "--set", value, check=False)
    assert proc.returncode != 0 and f"at '{where}" in proc.stderr, proc.stderr


@pytest.mark.parametrize("values", [[], CUSTOM], ids=["default", "custom"])
def test_the_api_server_accepts_every_rendering(kube, values):
    rendered = helm(kube, "template", "t", str(CHART), "-n", "reel-x", *values, "--show-only", POLICY).stdout
    proc = subprocess.run([_kubectl(), "--kubeconfig", str(kube.kubeconfig), "apply", "--dry-run=server", "-f", "-"],
                          input=rendered, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr  # CEL that does not compile is refused here
    assert proc.stdout.count("(server dry run)") == 2, proc.stdout
