"""The invalid-session table (tests/data/invalid_sessions.yaml), checked on both sides.

- `load_session` refuses each case with the expected path and message.
- The generated CRD refuses each case too: a small model of the apiserver's CRD validation (structural
  defaulting, OpenAPI types/enums/ranges/lengths/patterns, list-type sets, unknown fields) plus the CEL rules
  evaluated with cel-python (pure-Python CEL; RE2 regular expressions like the apiserver). It is a model, not
  the apiserver: the cluster integration test applies the same table to a real one.
"""

import copy
import re
from pathlib import Path

import celpy
import pytest
import yaml
from tests.support.mergepatch import merge_patch

from reel_api import RecordingSession, SessionError, crd, load_session, validate_update

TABLE = yaml.safe_load((Path(__file__).resolve().parents[1] / "data" / "invalid_sessions.yaml").read_text())
CASES = TABLE["cases"]
SCHEMA = crd.openapi_schema()
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "session.yaml"


def build(case):
    """(old object or None, new object) for a case, as the table's header says."""
    old = merge_patch(TABLE["base"], case["old"]) if "old" in case else None
    return old, merge_patch(TABLE["base"], case["patch"])


def ids(case):
    return case["name"]


# ---------------------------------------------------------------------------------------------------------
# A model of the apiserver's validation of a custom resource against the CRD schema
# ---------------------------------------------------------------------------------------------------------


def apply_defaults(schema, value):
    """Structural defaulting: a missing property with a default gets it, recursively (into defaults too)."""
    if isinstance(value, dict) and "properties" in schema:
        for name, sub in schema["properties"].items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                value[name] = apply_defaults(sub, value[name])
    elif isinstance(value, list) and "items" in schema:
        value[:] = [apply_defaults(schema["items"], v) for v in value]
    return value


_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
}


def schema_errors(schema, value, path):
    """OpenAPI validation errors as (path, message), worded like the apiserver's."""
    if schema.get("x-kubernetes-int-or-string"):
        if not (_TYPES["integer"](value) or _TYPES["string"](value)):
            return [(path, f"{path} in body must be of type integer,string")]
    elif "type" in schema and not _TYPES[schema["type"]](value):
        return [(path, f"Invalid value: {path} in body must be of type {schema['type']}")]
    errors = []
    if "enum" in schema and value not in schema["enum"]:
        supported = ", ".join(f'"{v}"' for v in schema["enum"])
        errors.append((path, f'Unsupported value: "{value}": supported values: {supported}'))
    if "minimum" in schema and value < schema["minimum"]:
        errors.append((path, f"{path} in body should be greater than or equal to {schema['minimum']}"))
    if "maximum" in schema and value > schema["maximum"]:
        errors.append((path, f"{path} in body should be less than or equal to {schema['maximum']}"))
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            errors.append((path, f"{path} in body should be at least {schema['minLength']} chars long"))
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append((path, f"Too long: may not be more than {schema['maxLength']} bytes"))
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append((path, f"{path} in body should match '{schema['pattern']}'"))
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            errors.append((path, f"{path} in body should have at least {schema['minItems']} items"))
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errors.append((path, f"Too many: {len(value)}: must have at most {schema['maxItems']} items"))
        if schema.get("x-kubernetes-list-type") == "set":
            seen = []
            for i, item in enumerate(value):
                if item in seen:
                    errors.append((f"{path}[{i}]", f'Duplicate value: "{item}"'))
                seen.append(item)
        for i, item in enumerate(value):
            errors += schema_errors(schema["items"], item, f"{path}[{i}]")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                errors.append((f"{path}.{name}", "Required value"))
        for name, item in value.items():
            if name in props:
                errors += schema_errors(props[name], item, f"{path}.{name}")
            elif not schema.get("x-kubernetes-preserve-unknown-fields") and path != "metadata":
                errors.append((f"{path}.{name}", f'unknown field "{path}.{name}"'))
    return errors


def cel_errors(schema, value, path, old=None):
    """The x-kubernetes-validations that fail, evaluated with cel-python."""
    errors = []
    for rule in schema.get("x-kubernetes-validations", []):
        activation = {"self": celpy.json_to_cel(value)}
        if "oldSelf" in rule["rule"]:
            if old is None:
                continue
            activation["oldSelf"] = celpy.json_to_cel(old)
        env = celpy.Environment()
        result = env.program(env.compile(rule["rule"])).evaluate(activation)
        if result is not True and not (isinstance(result, celpy.celtypes.BoolType) and bool(result)):
            errors.append((path, f"Invalid value: {rule['message']}"))
    if isinstance(value, dict):
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                sub_old = old.get(name) if isinstance(old, dict) else None
                errors += cel_errors(sub, value[name], f"{path}.{name}", sub_old)
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):  # list items have no oldSelf correlation here
            errors += cel_errors(schema["items"], item, f"{path}[{i}]")
    return errors


def apiserver_errors(obj, old=None):
    """What our model of the apiserver says about creating `obj` (or updating `old` to `obj`)."""
    obj = apply_defaults(SCHEMA, copy.deepcopy(obj))
    errors = [
        e
        for name, sub in SCHEMA["properties"].items()
        if name in obj
        for e in schema_errors(sub, obj[name], name)
    ]
    errors += [(name, "Required value") for name in SCHEMA["required"] if name not in obj]
    if not errors:  # CEL rules run on schema-valid objects here
        if old is not None:
            old = apply_defaults(SCHEMA, copy.deepcopy(old))
        errors += cel_errors(SCHEMA["properties"]["spec"], obj["spec"], "spec", old and old["spec"])
    return errors


def matches(errors, case):
    return any(case["path"] in path and case["message"] in message for path, message in errors)


# ---------------------------------------------------------------------------------------------------------


def test_table_is_big_enough_and_names_are_unique():
    assert len(CASES) >= 15
    assert len({ids(c) for c in CASES}) == len(CASES)
    for case in CASES:
        assert set(case) <= {"name", "patch", "old", "path", "message", "fieldValidation"}, case["name"]


def test_base_is_valid_on_both_sides_with_the_same_defaults():
    session = load_session(TABLE["base"])
    assert apiserver_errors(TABLE["base"]) == []
    defaulted = apply_defaults(SCHEMA, copy.deepcopy(TABLE["base"]))
    assert session.to_dict(status=False)["spec"] == defaulted["spec"]


@pytest.mark.parametrize("case", [c for c in CASES if "old" not in c], ids=ids)
def test_load_session_refuses(case):
    _, obj = build(case)
    with pytest.raises(SessionError) as e:
        load_session(obj)
    assert matches(e.value.problems, case), str(e.value)


@pytest.mark.parametrize("case", [c for c in CASES if "old" in c], ids=ids)
def test_validate_update_refuses(case):
    old, new = build(case)
    assert apiserver_errors(old) == [], "the old object of an update case must be valid"
    with pytest.raises(SessionError) as e:
        validate_update(load_session(old), load_session(new))
    assert matches(e.value.problems, case), str(e.value)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_crd_refuses(case):
    old, obj = build(case)
    errors = apiserver_errors(obj, old)
    assert matches(errors, case), errors


@pytest.mark.parametrize("case", [c for c in CASES if "old" in c], ids=ids)
def test_update_cases_are_valid_as_creates(case):
    """An update case is refused for the transition alone: its new object is fine on its own."""
    _, obj = build(case)
    assert apiserver_errors(obj) == []
    load_session(obj)


VALID_PATCHES = {
    "string-room-id": {"spec": {"room": {"id": "weekly-standup"}}},
    "wss-with-path": {"spec": {"room": {"server": "wss://janus.example.com:443/janus"}}},
    "ipv6-server": {"spec": {"room": {"server": "ws://[fd00::10]:8188"}}},
    "room-id-128-chars": {"spec": {"room": {"id": "r" * 128}}},
    "secret-refs": {
        "spec": {
            "room": {"credentialsSecretRef": {"name": "room-1234"}},
            "storage": {"credentialsSecretRef": {"name": "s3.creds"}},
        }
    },
    "subscribe-only": {"spec": {"recording": {"subscribe": ["alice", "42"], "unsubscribe": []}}},
    "all-recording-fields": {
        "spec": {
            "recording": {
                "ingest": "forward",
                "mode": "individual",
                "streamTypes": "audio",
                "maxIdleSeconds": 2592000,
                "maxDurationSeconds": 3600,
                "segmentSeconds": 30,
                "outputs": ["hls"],
                "segmentFormat": "ts",
            }
        }
    },
    "min-ranges": {"spec": {"recording": {"maxIdleSeconds": 5, "segmentSeconds": 1}}},
    "minio": {
        "spec": {
            "storage": {
                "endpoint": "http://minio.media.svc:9000",
                "region": "local",
                "bucket": "rec.ord-ings",
                "prefix": "",
                "serverSideEncryption": "AES256",
            }
        }
    },
    "local-storage": {"spec": {"storage": {"bucket": None, "local": {"path": "/recordings"}}}},
    "dots-in-prefix-names": {"spec": {"storage": {"prefix": "a..b/.x/{recordingId}/"}}},
    "backup": {"spec": {"backupStorage": {"bucket": "backup", "serverSideEncryption": "aws:kms"}}},
    "stopped-tagged": {"spec": {"stop": True, "paused": False, "tag": "t" * 256}},
}


@pytest.mark.parametrize("patch", VALID_PATCHES.values(), ids=VALID_PATCHES.keys())
def test_valid_variants_accepted_on_both_sides(patch):
    obj = merge_patch(TABLE["base"], patch)
    session = load_session(obj)
    assert apiserver_errors(obj) == []
    assert session.to_dict(status=False)["spec"] == apply_defaults(SCHEMA, copy.deepcopy(obj))["spec"]


def test_valid_updates_accepted_on_both_sides():
    old = TABLE["base"]
    for patch in (
        {"spec": {"stop": True}},
        {"spec": {"tag": "x"}},
        {"spec": {"recording": {"maxIdleSeconds": 60}}},
        {"spec": {"recording": {"maxDurationSeconds": 3600, "maxRestarts": 5, "recorderSilenceSeconds": 120}}},
        {"spec": {"paused": True}},
        {"metadata": {"labels": {"a": "b"}}},
    ):
        new = merge_patch(old, patch)
        assert apiserver_errors(new, old) == [], patch
        validate_update(load_session(old), load_session(new))


def test_example_is_valid():
    session = load_session(EXAMPLE)
    assert isinstance(session, RecordingSession)
    assert apiserver_errors(yaml.safe_load(EXAMPLE.read_text())) == []


def test_model_of_the_apiserver_has_cel():
    """Guards against a silently skipped CEL evaluation (the CRD cases would then pass for wrong reasons)."""
    obj = merge_patch(TABLE["base"], {"spec": {"room": {"server": "http://x"}}})
    assert cel_errors(SCHEMA["properties"]["spec"], apply_defaults(SCHEMA, obj)["spec"], "spec")
