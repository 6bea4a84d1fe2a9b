"""The bad-input catalogue (docs/bad-input.md, issue 15): the cases are counted from the test tables themselves
(data files, module-level lists, parametrize lists read with ``ast``), the document's counts must equal them, and
the whole catalogue must hold at least 40 cases."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"
DOC = REPO / "docs" / "bad-input.md"
MINIMUM = 40


def _tree(path: str) -> ast.Module:
    return ast.parse((TESTS / path).read_text())


def list_length(path: str, name: str) -> int:
    """Items of the module-level list literal ``name = [...]`` in a test file."""
    for node in _tree(path).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            assert isinstance(node.value, ast.List), (path, name)
            return len(node.value.elts)
    raise AssertionError(f"no list {name} in {path}")


def param_count(path: str, test: str) -> int:
    """Cases of ``test``: the length of its parametrize list literal, 1 when not parametrized."""
    for node in _tree(path).body:
        if isinstance(node, ast.FunctionDef) and node.name == test:
            for deco in node.decorator_list:
                if isinstance(deco, ast.Call) and getattr(deco.func, "attr", "") == "parametrize":
                    values = deco.args[1]
                    assert isinstance(values, ast.List), (path, test)
                    return len(values.elts)
            return 1
    raise AssertionError(f"no test {test} in {path}")


def counts() -> dict[str, int]:
    """Group (the first column of the document's table) -> cases, counted from the tests."""
    invalid = yaml.safe_load((TESTS / "data" / "invalid_sessions.yaml").read_text())["cases"]
    return {
        "schema and CEL": len(invalid),
        "ValidatingAdmissionPolicy": (
            param_count("e2e/test_session_admission.py",
                        "test_admission_refuses_sessions_aimed_at_metadata_or_the_api_server")
            + param_count("e2e/test_session_admission.py", "test_admission_refuses_a_bucket_without_credentials")),
        "endpoints not allowed": (list_length("unit/test_endpoint_policy.py", "REFUSED")
                                  + param_count("unit/test_endpoint_policy.py", "test_urls_the_api_refuses_anyway")
                                  + param_count("unit/test_endpoint_policy.py",
                                                "test_credentials_required_unless_ambient_ones_are_allowed")
                                  + param_count("e2e/test_session_admission.py",
                                                "test_a_name_resolving_to_the_api_server_fails_endpoint_not_allowed")),
        "missing Secrets and keys": (list_length("unit/test_missing_secret_keys.py", "MISSING")
                                     + param_count("unit/test_missing_secret_keys.py",
                                                   "test_a_container_config_error_about_a_secret_is_secret_not_found")),
        "wrong credentials": (list_length("e2e/test_no_secret_leaks.py", "FAILING")
                              + param_count("integration/test_recorder.py", "test_wrong_pin")
                              + param_count("integration/test_recorder.py",
                                            "test_wrong_admin_key_refuses_forwarding")),
        "bad resources annotation": (list_length("unit/test_resource_limits.py", "REFUSED")
                                     + param_count("unit/test_podspec.py", "test_resources_override_errors")),
        "hostile display names": (list_length("unit/test_hostile_display_names.py", "HOSTILE")
                                  + param_count("unit/test_hostile_display_names.py",
                                                "test_a_hostile_publisher_id_too")
                                  + list_length("integration/test_recorder.py", "HOSTILE")),
        "forged media": (param_count("integration/test_forged_media.py",
                                     "test_forged_rtp_and_rtcp_from_a_third_address_change_nothing")
                         + param_count("unit/test_rtp_gate.py",
                                       "test_the_gate_thread_hands_janus_frames_on_and_drops_a_strangers")),
    }


def documented() -> dict[str, int]:
    """Group -> count from the document's table rows ``| layer | group | count | ...``."""
    out = {}
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and re.fullmatch(r"\d+", cells[2]):
            out[cells[1]] = int(cells[2])
    return out


def test_the_document_counts_what_the_tests_hold():
    assert documented() == counts()


def test_the_catalogue_holds_at_least_40_cases():
    total = sum(counts().values())
    assert total >= MINIMUM, total
    assert f"**{total}**" in DOC.read_text(), f"docs/bad-input.md should state the total, **{total}**"
