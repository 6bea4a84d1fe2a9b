"""The one vocabulary (reel_api.vocabulary): importable without pydantic, the CRD's enums, the README, and no
string literal of it elsewhere in the product code."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from enum import StrEnum
from pathlib import Path

import yaml

import reel_api
from reel_api import crd, models, vocabulary
from reel_api.vocabulary import (
    TERMINAL_PHASES,
    ConditionReason,
    ConditionStatus,
    ConditionType,
    FailureReason,
    InterruptionReason,
    Phase,
    RoomState,
    SkipReason,
    StopReason,
)

ROOT = Path(__file__).resolve().parents[2]
ENUMS: tuple[type[StrEnum], ...] = (Phase, StopReason, FailureReason, ConditionType, ConditionStatus, ConditionReason,
                                    InterruptionReason, SkipReason, RoomState)


def test_vocabulary_and_recorder_errors_import_without_pydantic():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT / "operator"), str(ROOT / "recorder_image"), os.environ.get("PYTHONPATH", "")])}
    code = "import reel_api.vocabulary, reel_recorder.errors, sys; assert 'pydantic' not in sys.modules"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_enums_are_well_formed():
    for enum in ENUMS:
        for member in enum:
            assert re.fullmatch(r"[A-Z][A-Za-z]*", member.value), member
    assert {Phase.COMPLETED, Phase.BACKED_UP, Phase.FAILED} == TERMINAL_PHASES
    assert "Completed" in TERMINAL_PHASES and None not in TERMINAL_PHASES  # plain strings from the API match


def test_every_member_has_a_comment():
    """Each member says, in a comment on its line, what it means to a user."""
    source = Path(vocabulary.__file__).read_text()
    for enum in ENUMS:
        for member in enum:
            line = next(ln for ln in source.splitlines() if re.match(rf"\s+{member.name} = ", ln))
            assert re.search(r'"\s+#\s*\S', line), f"{enum.__name__}.{member.name} has no comment"


def test_reel_api_exports_the_vocabulary_and_the_models():
    for name in vocabulary.__all__:
        assert getattr(reel_api, name) is getattr(vocabulary, name)
    missing = set(models.__all__) - set(reel_api.__all__)
    assert not missing, f"reel_api.__all__ (its _MODELS) misses {sorted(missing)}"
    for name in reel_api.__all__:
        assert getattr(reel_api, name) is not None
    for name in ("Phase", "StopReason", "ConditionType", "ConditionStatus", "TERMINAL_PHASES"):
        assert getattr(models, name) is getattr(vocabulary, name)


def _status_schema(doc: dict) -> dict:
    version = doc["spec"]["versions"][0]
    return version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]


def test_crd_enums_are_the_vocabulary():
    committed = yaml.safe_load((ROOT / "crds" / "reel.dev_recordingsessions.yaml").read_text())
    for doc in (committed, crd.build_crd()):
        status = _status_schema(doc)
        assert status["phase"]["enum"] == [p.value for p in Phase]
        assert status["stopReason"]["enum"] == [r.value for r in StopReason]
        assert status["conditions"]["items"]["properties"]["status"]["enum"] == [s.value for s in ConditionStatus]


def test_readme_lists_every_phase_stop_reason_and_failure_reason():
    readme = (ROOT / "README.md").read_text()
    start = readme.index("### Phases, and what to do about failures")
    section = readme[start:readme.index("\n## ", start)]
    for enum in (Phase, StopReason, FailureReason):
        missing = [m.value for m in enum if not re.search(rf"\b{m.value}\b", section)]
        assert not missing, f"README.md's phases section does not mention {enum.__name__} {missing}"


# -- no literal of the vocabulary elsewhere in the product code ------------------------------------------------

PRODUCT = (ROOT / "operator" / "reel_operator", ROOT / "operator" / "reel_api",
           ROOT / "recorder_image" / "reel_recorder")
#: Strings that equal one of ours but are not: Kubernetes' (named as constants where compared), others' names.
NOT_OURS = {
    ("reel_operator/status.py", "Failed"),  # POD_FAILED: a pod's status.phase
    ("reel_operator/status.py", "Pending"),  # POD_PENDING: a pod's status.phase
    ("reel_operator/status.py", "Unschedulable"),  # UNSCHEDULABLE: the scheduler's reason
    ("reel_operator/status.py", "Ready"),  # POD_READY: a pod condition
    ("reel_operator/status.py", "Evicted"),  # POD_EVICTED: a pod's status.reason
    ("reel_operator/status.py", "NodeLost"),  # POD_NODE_LOST: a pod's status.reason
    ("reel_api/__init__.py", "Recording"),  # the model class Recording, exported lazily
    ("reel_api/models.py", "Recording"),  # the model class Recording, in __all__
    ("reel_recorder/storage/s3_errors.py", "Error"),  # botocore's error response key (the S3 error translation)
}
VALUES = {m.value for enum in (Phase, StopReason, FailureReason, ConditionType, ConditionReason, InterruptionReason,
                               SkipReason, RoomState) for m in enum}


def _literals(tree: ast.AST):
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node


def test_no_vocabulary_literals_in_product_code():
    found = []
    for package in PRODUCT:
        for path in sorted(package.rglob("*.py")):
            if path.name == "vocabulary.py":
                continue
            rel = path.relative_to(package.parent).as_posix()
            for node in _literals(ast.parse(path.read_text(), str(path))):
                if node.value in VALUES and (rel, node.value) not in NOT_OURS:
                    found.append(f"{rel}:{node.lineno}: {node.value!r}")
    assert not found, "use reel_api.vocabulary instead of:\n" + "\n".join(found)
