"""The reel.dev/recorder-resources annotation against the chart's maxima (reel_operator/resource_limits.py): what a
session may ask for, what it may not (extended resources, removed limits, above the maxima), the message naming
the field, what was asked and the maximum; the settings and the chart carrying the maxima; and the operator
failing such a session InvalidRecorderSettings without creating anything."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from reel_api import load_session
from reel_operator import names, podspec, resource_limits
from reel_operator.settings import RESOURCES_ANNOTATION, Settings, SettingsError

REPO = Path(__file__).resolve().parents[2]
DEFAULTS = {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}}
MAXIMA = dict(resource_limits.DEFAULT_MAX_RESOURCES)


def problems(override, defaults=DEFAULTS, maxima=MAXIMA):
    return resource_limits.override_problems(override, defaults, maxima)


def session(annotation: str | None, mode: str = "individual"):
    meta = {"name": "s", "namespace": "media", "uid": "u-1",
            "annotations": {RESOURCES_ANNOTATION: annotation} if annotation is not None else {}}
    return load_session({"apiVersion": "reel.dev/v1alpha1", "kind": "RecordingSession", "metadata": meta,
                         "spec": {"room": {"server": "ws://janus:8188", "id": 1},
                                  "storage": {"bucket": "rec", "endpoint": "http://minio:9000"},
                                  "recording": {"mode": mode}}})


ALLOWED = [
    {},
    {"limits": {"memory": "1Gi"}},
    {"limits": {"memory": "4Gi"}},                              # exactly the maximum
    {"limits": {"memory": "4096Mi", "cpu": "4"}},               # the same quantity, other units
    {"limits": {"cpu": "4000m"}},
    {"limits": {"cpu": 2}},                                     # JSON numbers are quantities too
    {"limits": {"cpu": 1.5}},
    {"requests": {"cpu": "250m"}},
    {"requests": {"cpu": "1", "memory": "512Mi"}},              # request = limit
    {"requests": {"memory": "0"}},                              # a zero request is no removal of anything
    {"requests": {"cpu": ""}},                                  # a request removed: Kubernetes uses the limit
    {"requests": {"ephemeral-storage": "1Gi"}, "limits": {"ephemeral-storage": "20Gi"}},
    {"limits": {"memory": "2e9"}},                              # decimal exponent, below 4Gi
    {"requests": {"memory": "64Mi"}, "limits": {"memory": "64Mi"}},
]


@pytest.mark.parametrize("override", ALLOWED, ids=[json.dumps(o) for o in ALLOWED])
def test_allowed_overrides(override):
    assert problems(override) == []


# (override, words the one message must contain: the field, what was asked, the maximum or the rule)
REFUSED = [
    ({"limits": {"memory": "5Gi"}}, ["limits.memory", "5Gi", "4Gi", "maximum"]),
    ({"limits": {"memory": "4097Mi"}}, ["limits.memory", "4097Mi", "4Gi"]),
    ({"limits": {"memory": "1Ti"}}, ["limits.memory", "1Ti", "4Gi"]),
    ({"limits": {"memory": "5e9"}}, ["limits.memory", "5e9", "4Gi"]),
    ({"limits": {"cpu": "5"}}, ["limits.cpu", "5", "maximum 4"]),
    ({"limits": {"cpu": "4001m"}}, ["limits.cpu", "4001m", "4"]),
    ({"limits": {"cpu": 64}}, ["limits.cpu", "64", "4"]),
    ({"requests": {"cpu": "8"}}, ["requests.cpu", "8", "4"]),
    ({"requests": {"memory": "16Gi"}}, ["requests.memory", "16Gi", "4Gi"]),
    ({"limits": {"ephemeral-storage": "100Gi"}}, ["limits.ephemeral-storage", "100Gi", "20Gi"]),
    ({"requests": {"ephemeral-storage": "21Gi"}}, ["requests.ephemeral-storage", "21Gi", "20Gi"]),
    ({"limits": {"memory": None}}, ["limits.memory", "removing the limit", "512Mi", "4Gi"]),
    ({"limits": {"memory": ""}}, ["limits.memory", "removing the limit", "512Mi"]),
    ({"limits": {"cpu": ""}}, ["limits.cpu", "removing the limit", "default is 1"]),
    ({"limits": {"cpu": "0"}}, ["limits.cpu", "0", "zero limit", "removing the limit"]),
    ({"limits": {"memory": "0Mi"}}, ["limits.memory", "0Mi", "removing the limit"]),
    ({"limits": {"memory": 0}}, ["limits.memory", "removing the limit"]),
    ({"limits": {"ephemeral-storage": ""}}, ["limits.ephemeral-storage", "removing the limit", "none"]),
    ({"limits": {"nvidia.com/gpu": "1"}}, ["limits.nvidia.com/gpu", "only cpu, memory and ephemeral-storage"]),
    ({"requests": {"nvidia.com/gpu": 1}}, ["requests.nvidia.com/gpu", "extended resources"]),
    ({"limits": {"hugepages-2Mi": "1Gi"}}, ["limits.hugepages-2Mi", "hugepages"]),
    ({"limits": {"hugepages-1Gi": "2Gi"}}, ["limits.hugepages-1Gi"]),
    ({"limits": {"example.com/foo": "1"}}, ["limits.example.com/foo"]),
    ({"limits": {"pods": "1"}}, ["limits.pods", "only cpu"]),
    ({"limits": {"Memory": "1Gi"}}, ["limits.Memory"]),                    # names are case-sensitive
    ({"limits": {"memory": "lots"}}, ["limits.memory", "'lots'", "not a Kubernetes quantity"]),
    ({"limits": {"memory": "1 Gi"}}, ["limits.memory", "not a Kubernetes quantity"]),
    ({"limits": {"memory": "1GB"}}, ["limits.memory", "not a Kubernetes quantity"]),
    ({"limits": {"memory": "1_000"}}, ["limits.memory", "not a Kubernetes quantity"]),
    ({"limits": {"memory": "NaN"}}, ["limits.memory", "not a Kubernetes quantity"]),
    ({"limits": {"cpu": float("nan")}}, ["limits.cpu", "not a Kubernetes quantity"]),   # json.loads takes NaN
    ({"limits": {"cpu": float("inf")}}, ["limits.cpu", "not a Kubernetes quantity"]),
    ({"limits": {"cpu": "1e400"}}, ["limits.cpu", "1e400", "maximum 4"]),
    ({"limits": {"cpu": "-1"}}, ["limits.cpu", "-1", "negative"]),
    ({"requests": {"memory": "-128Mi"}}, ["requests.memory", "negative"]),
    ({"limits": {"cpu": "50m"}}, ["requests.cpu", "100m", "above limits.cpu 50m"]),  # below the default request
    ({"requests": {"memory": "1Gi"}}, ["requests.memory", "1Gi", "limits.memory 512Mi"]),
]


@pytest.mark.parametrize("override,words", REFUSED, ids=[json.dumps(o) for o, _ in REFUSED])
def test_refused_overrides_name_the_field_the_ask_and_the_maximum(override, words):
    found = problems(override)
    assert len(found) == 1, found
    for word in words:
        assert word in found[0], (word, found[0])


def test_every_problem_is_reported_at_once():
    found = problems({"limits": {"memory": "9Gi", "cpu": None, "nvidia.com/gpu": "1"},
                      "requests": {"cpu": "5"}})
    assert [p.split(":")[0] for p in found] == ["requests.cpu", "limits.memory", "limits.cpu", "limits.nvidia.com/gpu"]


def test_without_a_maximum_a_resource_is_unbounded_but_the_other_rules_hold():
    assert problems({"limits": {"memory": "64Gi"}}, maxima={"cpu": "4"}) == []
    assert problems({"limits": {"memory": "64Gi", "cpu": "5"}}, maxima={"cpu": "4"})[0].startswith("limits.cpu")
    assert "removing the limit" in problems({"limits": {"memory": None}}, maxima={})[0]
    assert "only cpu" in problems({"limits": {"nvidia.com/gpu": "1"}}, maxima={})[0]


def test_a_default_without_a_limit_still_cannot_be_asked_to_be_unlimited_by_zero():
    no_limits = {"requests": {"cpu": "100m"}, "limits": {}}
    assert problems({"limits": {"cpu": "2"}}, defaults=no_limits) == []
    assert "removing the limit" in problems({"limits": {"cpu": "0"}}, defaults=no_limits)[0]


@pytest.mark.parametrize("maxima,word", [({"gpu": "1"}, "gpu"), ({"cpu": "lots"}, "'lots'"),
                                         ({"memory": "0"}, "positive"), ({"cpu": True}, "True")])
def test_bad_maxima_are_settings_errors(maxima, word):
    assert any(word in p for p in resource_limits.maxima_problems(maxima))
    with pytest.raises(SettingsError, match="REEL_RECORDER_MAX_RESOURCES"):
        Settings.from_env({"REEL_RECORDER_MAX_RESOURCES": json.dumps(maxima)})


def test_settings_carry_the_maxima():
    assert Settings.from_env({}).max_resources == {"cpu": "4", "memory": "4Gi", "ephemeral-storage": "20Gi"}
    assert Settings().max_resources == Settings.from_env({}).max_resources
    s = Settings.from_env({"REEL_RECORDER_MAX_RESOURCES": '{"cpu": 8, "memory": "16Gi"}'})
    assert s.max_resources == {"cpu": "8", "memory": "16Gi"}
    assert Settings.from_env({"REEL_RECORDER_MAX_RESOURCES": "{}"}).max_resources == {}


def test_the_chart_default_is_the_operator_default_and_reaches_the_operator():
    values = yaml.safe_load((REPO / "charts/reel/values.yaml").read_text())
    assert {k: str(v) for k, v in values["recorder"]["maxResources"].items()} == resource_limits.DEFAULT_MAX_RESOURCES
    schema = json.loads((REPO / "charts/reel/values.schema.json").read_text())
    node = schema["properties"]["recorder"]["properties"]["maxResources"]
    assert node["additionalProperties"] is False and set(node["properties"]) == set(resource_limits.ALLOWED_RESOURCES)
    deployment = (REPO / "charts/reel/templates/deployment.yaml").read_text()
    assert "REEL_RECORDER_MAX_RESOURCES" in deployment and "$rec.maxResources" in deployment


def test_the_pod_builder_refuses_with_the_annotation_named():
    with pytest.raises(names.BuildError, match=RESOURCES_ANNOTATION) as err:
        podspec.build_pod(session('{"limits": {"memory": "64Gi"}}'), Settings())
    assert "limits.memory: asked 64Gi, above the maximum 4Gi" in str(err.value)
    with pytest.raises(names.BuildError, match="removing the limit"):
        podspec.build_pod(session('{"limits": {"memory": null}}'), Settings())
    with pytest.raises(names.BuildError, match=r"nvidia\.com/gpu"):
        podspec.build_pod(session('{"limits": {"nvidia.com/gpu": "1"}}'), Settings())
    with pytest.raises(names.BuildError, match="must map resource names"):
        podspec.build_pod(session('{"limits": {"memory": true}}'), Settings())
    # the composite's own defaults are what the annotation is merged over
    assert podspec.resources(session('{"limits": {"cpu": "4"}}', mode="both"), Settings()) == {
        "requests": {"cpu": "300m", "memory": "256Mi"}, "limits": {"cpu": "4", "memory": "768Mi"}}
    with pytest.raises(names.BuildError, match=r"requests\.memory: asked 1Gi, above limits\.memory 768Mi"):
        podspec.build_pod(session('{"requests": {"memory": "1Gi"}}', mode="composite"), Settings())


def test_the_operator_fails_the_session_invalid_recorder_settings_and_creates_nothing(monkeypatch):
    import kopf
    from tests.support.fake_kube import FakeKube

    from reel_operator.handlers import common, create

    posted = []
    monkeypatch.setattr(kopf, "event", lambda obj, type, reason, message: posted.append((type, reason, message)))
    ctx = common.Context(kube=FakeKube(), settings=Settings(allow_ambient_credentials=True))
    body = ctx.kube.add_session("greedy")
    body["metadata"]["annotations"] = {RESOURCES_ANNOTATION: '{"limits": {"nvidia.com/gpu": "2", "cpu": "16"}}'}
    ctx.kube.sessions[("media", "greedy")]["metadata"]["annotations"] = body["metadata"]["annotations"]
    create.start(ctx, body)
    status = ctx.kube.sessions[("media", "greedy")]["status"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert status["phase"] == "Failed" and ready["reason"] == "InvalidRecorderSettings", status
    assert "limits.nvidia.com/gpu" in status["message"] and "limits.cpu: asked 16, above the maximum 4" in \
        status["message"]
    assert not [k for k in ctx.kube.objects if k[0] in ("Pod", "Lease", "ServiceAccount")], ctx.kube.objects
    # the operator still serves the next session
    create.start(ctx, ctx.kube.add_session("fine", room=5678))
    assert ("Pod", "media", "reel-rec-fine") in ctx.kube.objects
