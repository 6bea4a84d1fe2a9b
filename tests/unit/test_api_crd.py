"""The generated CRD: structural, complete, deterministic, and the committed files are fresh."""

from pathlib import Path

import yaml

from reel_api import crd
from reel_api.models import RecordingSessionSpec

ROOT = Path(__file__).resolve().parents[2]

# What a structural schema may not contain (apiextensions.k8s.io/v1); `not`/`allOf`/`anyOf`/`oneOf` are only
# allowed without types, descriptions and defaults inside, which we never need, so we have none at all.
FORBIDDEN_KEYS = {
    "$ref",
    "$schema",
    "$defs",
    "definitions",
    "anyOf",
    "oneOf",
    "allOf",
    "not",
    "title",
    "const",
    "nullable",
    "additionalItems",
    "patternProperties",
    "dependencies",
    "id",
}
OPENAPI_KEYS = {
    "description",
    "type",
    "format",
    "enum",
    "default",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "uniqueItems",
    "items",
    "properties",
    "required",
    "additionalProperties",
    "minProperties",
    "maxProperties",
    "x-kubernetes-int-or-string",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-embedded-resource",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type",
    "x-kubernetes-validations",
}


def structural_problems(node, path="openAPIV3Schema", *, is_property=True):
    """Every violation of the structural schema rules (and of our own: descriptions on every field)."""
    problems = []
    if not isinstance(node, dict):
        return [f"{path}: not a mapping"]
    for key in node:
        if key in FORBIDDEN_KEYS:
            problems.append(f"{path}: forbidden key {key}")
        elif key not in OPENAPI_KEYS:
            problems.append(f"{path}: unknown key {key}")
    typed = (
        "type" in node
        or node.get("x-kubernetes-int-or-string")
        or node.get("x-kubernetes-preserve-unknown-fields")
    )
    if not typed:
        problems.append(f"{path}: no type")
    if node.get("x-kubernetes-int-or-string") and "type" in node:
        problems.append(f"{path}: x-kubernetes-int-or-string with a type")
    if node.get("uniqueItems"):
        problems.append(f"{path}: uniqueItems: true is not allowed")
    if "properties" in node and "additionalProperties" in node:
        problems.append(f"{path}: properties and additionalProperties together")
    if node.get("type") == "array" and "items" not in node:
        problems.append(f"{path}: array without items")
    if is_property and not node.get("description") and path.rsplit(".", 1)[-1] != "metadata":
        problems.append(f"{path}: no description")
    if (
        node.get("type") == "object"
        and "properties" not in node
        and not (node.get("x-kubernetes-preserve-unknown-fields") or "additionalProperties" in node)
        and path.rsplit(".", 1)[-1] != "metadata"
    ):
        problems.append(f"{path}: object without properties")
    for name in node.get("required", []):
        if name not in node.get("properties", {}):
            problems.append(f"{path}: required {name} is not a property")
    if "enum" in node and "default" in node and node["default"] not in node["enum"]:
        problems.append(f"{path}: default {node['default']!r} not in enum")
    if node.get("x-kubernetes-list-type") == "map":
        item = node.get("items", {})
        for key in node.get("x-kubernetes-list-map-keys", []):
            if key not in item.get("required", []):
                problems.append(f"{path}: list-map key {key} is not required in items")
    if node.get("x-kubernetes-list-type") == "set" and node.get("items", {}).get("type") in (
        "object",
        "array",
    ):
        problems.append(f"{path}: set of non-scalars")
    for rule in node.get("x-kubernetes-validations", []):
        if set(rule) - {"rule", "message", "messageExpression", "reason", "fieldPath", "optionalOldSelf"}:
            problems.append(f"{path}: unknown keys in validation rule {rule}")
        if not rule.get("rule") or not rule.get("message"):
            problems.append(f"{path}: validation rule without rule or message: {rule}")
    for name, sub in node.get("properties", {}).items():
        problems += structural_problems(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        problems += structural_problems(node["items"], f"{path}[]", is_property=False)
    if isinstance(node.get("additionalProperties"), dict):
        problems += structural_problems(node["additionalProperties"], f"{path}{{}}", is_property=False)
    return problems


def test_checker_catches_what_pydantic_would_produce():
    raw = RecordingSessionSpec.model_json_schema(by_alias=True)
    raw.pop("$defs")
    problems = structural_problems(raw)
    assert any("forbidden key $ref" in p for p in problems)
    assert any("forbidden key anyOf" in p for p in problems)
    assert any("forbidden key title" in p for p in problems)
    assert any("no type" in p for p in problems)


def test_schema_is_structural_with_descriptions_everywhere():
    schema = crd.build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert structural_problems(schema) == []


def test_crd_identity():
    c = crd.build_crd()
    assert c["apiVersion"] == "apiextensions.k8s.io/v1" and c["kind"] == "CustomResourceDefinition"
    assert c["metadata"]["name"] == "recordingsessions.reel.dev"
    spec = c["spec"]
    assert spec["group"] == "reel.dev" and spec["scope"] == "Namespaced"
    assert spec["names"] == {
        "kind": "RecordingSession",
        "listKind": "RecordingSessionList",
        "plural": "recordingsessions",
        "singular": "recordingsession",
        "shortNames": ["recs"],
        "categories": ["reel"],
    }
    (version,) = spec["versions"]
    assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"] if not c.get("priority")]
    assert columns == ["Room", "Phase", "Participants", "Progress", "Reason", "Age"]


def _node(schema, dotted):
    for part in dotted.split("."):
        schema = schema["items"] if part == "[]" else schema["properties"][part]
    return schema


def test_schema_details():
    s = crd.openapi_schema()
    spec = "spec"
    assert _node(s, "spec.room.id")["x-kubernetes-int-or-string"] is True
    assert _node(s, "status.participants.[].id")["x-kubernetes-int-or-string"] is True
    assert _node(s, "spec.recording")["default"] == {}
    assert _node(s, "spec.recording.ingest")["enum"] == ["forward", "webrtc", "auto"]
    assert _node(s, "spec.recording.mode")["enum"] == ["individual", "composite", "both"]
    assert _node(s, "spec.recording.composite.layout")["enum"] == ["grid", "speaker"]
    assert _node(s, "spec.recording.outputs")["default"] == ["hls"]
    idle = _node(s, "spec.recording.maxIdleSeconds")
    assert (idle["minimum"], idle["maximum"], idle["default"]) == (5, 2592000, 30)
    seg = _node(s, "spec.recording.segmentSeconds")
    assert (seg["minimum"], seg["maximum"], seg["default"]) == (1, 30, 4)
    assert _node(s, "spec.storage.prefix")["default"] == "{date}/{room}_{time}_{recordingId}/"
    assert _node(s, "spec.storage.serverSideEncryption")["enum"] == ["", "AES256", "aws:kms"]
    assert _node(s, "spec.tag")["maxLength"] == 256
    assert set(_node(s, spec)["required"]) == {"room", "storage"}
    assert _node(s, "status.phase")["enum"] == [
        "Pending",
        "Starting",
        "Recording",
        "Paused",
        "Stopping",
        "Uploading",
        "Completed",
        "BackedUp",
        "Failed",
    ]
    assert _node(s, "status.stopReason")["enum"] == [
        "Requested",
        "NoUsers",
        "MaxDuration",
        "Deleted",
        "AlreadyRecording",
        "Error",
    ]
    assert _node(s, "status.conditions.[].status")["enum"] == ["True", "False", "Unknown"]
    assert _node(s, "status.conditions")["x-kubernetes-list-map-keys"] == ["type"]


def _defaults(node):
    found = "default" in node
    for sub in node.get("properties", {}).values():
        found = found or _defaults(sub)
    return found or ("items" in node and _defaults(node["items"]))


def test_status_has_no_defaults():
    assert not _defaults(crd.openapi_schema()["properties"]["status"])


def _rules(node, path=""):
    out = [(path, r["rule"], r["message"]) for r in node.get("x-kubernetes-validations", [])]
    for name, sub in node.get("properties", {}).items():
        out += _rules(sub, f"{path}.{name}" if path else name)
    if "items" in node:
        out += _rules(node["items"], f"{path}[]")
    return out


def test_cel_rules_present():
    rules = {(path, rule) for path, rule, _ in _rules(crd.openapi_schema())}
    assert ("spec.room", "self == oldSelf") in rules
    assert ("spec.storage", "self == oldSelf") in rules
    assert ("spec.backupStorage", "self == oldSelf") not in rules
    assert ("spec.stop", "self || !oldSelf") in rules
    assert ("spec.storage", "has(self.bucket) != has(self.local)") in rules
    assert ("spec.backupStorage", "has(self.bucket) != has(self.local)") in rules
    paths = {path for path, _ in rules}
    for path in (
        "spec.room.server",
        "spec.room.id",
        "spec.recording",
        "spec.storage.bucket",
        "spec.storage.prefix",
        "spec.storage.endpoint",
        "spec.storage.local.path",
    ):
        assert path in paths, path


def test_cel_rules_only_on_bounded_strings_and_lists():
    """Cost estimation: every string a rule reads has a maxLength, every list a maxItems."""

    def walk(node, path, under_rule):
        has_rule = under_rule or bool(node.get("x-kubernetes-validations"))
        if has_rule and node.get("type") == "string":
            assert "maxLength" in node or "enum" in node, f"{path}: unbounded string under a CEL rule"
        if has_rule and node.get("type") == "array":
            assert "maxItems" in node, f"{path}: unbounded list under a CEL rule"
        for name, sub in node.get("properties", {}).items():
            walk(sub, f"{path}.{name}", has_rule)
        if "items" in node:
            walk(node["items"], f"{path}[]", has_rule)

    walk(crd.openapi_schema()["properties"]["spec"], "spec", False)


def test_generation_is_deterministic():
    assert crd.render_crd() == crd.render_crd()
    text = crd.render_crd()
    assert text.startswith("# Generated by")
    assert yaml.safe_load(text) == crd.build_crd()


def test_committed_files_are_fresh():
    text = crd.render_crd()
    assert (ROOT / crd.CRD_PATH).read_text() == text, "run `make crds`"
    assert (ROOT / crd.CHART_CRD_PATH).read_text() == text, "run `make crds`"


def test_check_mode(tmp_path, capsys):
    assert crd.main(["--root", str(tmp_path), "--check"]) == 1
    assert "(generated)" in capsys.readouterr().out
    assert crd.main(["--root", str(tmp_path)]) == 0
    assert (tmp_path / crd.CRD_PATH).read_text() == crd.render_crd()
    assert not (tmp_path / crd.CHART_CRD_PATH).exists()  # no chart here
    assert crd.main(["--root", str(tmp_path), "--check"]) == 0
    (tmp_path / crd.CHART_DIR).mkdir(parents=True)
    assert crd.main(["--root", str(tmp_path), "--check"]) == 1
    assert crd.main(["--root", str(tmp_path)]) == 0
    assert crd.main(["--root", str(tmp_path), "--check"]) == 0
    (tmp_path / crd.CRD_PATH).write_text(crd.render_crd().replace("recs", "rec"))
    assert crd.main(["--root", str(tmp_path), "--check"]) == 1
    assert "-    - rec\n+    - recs" in capsys.readouterr().out
