"""Reading a RecordingSession manifest as a user writes it for kubectl, with errors a user can act on.

`load_session` applies the same defaults and rules as the apiserver with the CRD installed, and reports every
problem at once, each as `field.path: what is wrong`, worded like the apiserver where practical.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .models import API_VERSION, KIND, RecordingSession
from .rules import Rule


class SessionError(ValueError):
    """An invalid RecordingSession. `problems` lists (field path, message) pairs; str() says it all."""

    def __init__(
        self, problems: Iterable[tuple[str, str]], *, source: str | None = None, name: str | None = None
    ):
        self.problems: list[tuple[str, str]] = list(problems)
        self.source = source
        self.name = name
        super().__init__(self._render())

    def _render(self) -> str:
        what = "invalid RecordingSession"
        if self.name:
            what += f' "{self.name}"'
        if self.source:
            what += f" in {self.source}"
        n = len(self.problems)
        lines = [f"{what}: {n} problem{'s' if n != 1 else ''}:"]
        lines += [f"  - {path}: {message}" if path else f"  - {message}" for path, message in self.problems]
        return "\n".join(lines)

    @property
    def messages(self) -> list[str]:
        """Each problem as one line, `path: message`."""
        return [f"{path}: {message}" if path else message for path, message in self.problems]


def load_session(source: str | Path | Mapping[str, Any]) -> RecordingSession:
    """Parse and validate a RecordingSession manifest; defaults are applied, `status` is ignored.

    `source` is a mapping (a parsed manifest), a Path to a YAML/JSON file, or a str: YAML text when it has a
    newline or starts with "{", a file path otherwise. The file or text holds exactly one document.
    Raises SessionError listing every problem found.
    """
    where, data = _read(source)
    if not isinstance(data, Mapping):
        raise SessionError(
            [("", f"expected a YAML mapping (a Kubernetes object), got {_type_name(data)}")], source=where
        )
    data = dict(data)
    data.pop("status", None)
    name = _name_of(data)

    problems: list[tuple[str, str]] = []
    for key, expected in (("apiVersion", API_VERSION), ("kind", KIND)):
        if key not in data:
            problems.append((key, f'Required value: must be "{expected}"'))
        elif data[key] != expected:
            problems.append((key, f'must be "{expected}" (got {_show(data[key])})'))
    checked = {k: v for k, v in data.items() if k not in ("apiVersion", "kind")}
    try:
        session = RecordingSession.model_validate(checked)
    except ValidationError as e:
        problems += [_problem(err) for err in e.errors()]
        session = None
    if problems:
        raise SessionError(problems, source=where, name=name)
    assert session is not None
    return session


def validate_update(old: RecordingSession, new: RecordingSession) -> None:
    """The transition rules the apiserver applies on update (immutable room, storage and the fields a recording is
    set up with, stop is final), at every depth of the spec."""
    problems = _transition_problems(old.spec, new.spec, "spec")
    if problems:
        raise SessionError(problems, name=new.metadata.name)


def _transition_problems(old: Any, new: Any, path: str) -> list[tuple[str, str]]:
    """The transition rules of model ``old``/``new`` (its own and its fields', recursively) that refuse the change."""
    from .models import ApiModel

    problems = [(path, r.message) for r in type(new).reel_rules
                if r.check_transition is not None and not r.check_transition(old, new)]
    for field_name, info in type(new).model_fields.items():
        before, after = getattr(old, field_name), getattr(new, field_name)
        if before is None or after is None:
            continue
        where = f"{path}.{info.alias or field_name}"
        problems += [(where, m.message) for m in info.metadata if isinstance(m, Rule) and
                     m.check_transition is not None and not m.check_transition(before, after)]
        if isinstance(before, ApiModel) and type(before) is type(after):
            problems += _transition_problems(before, after, where)
    return problems


# ---------------------------------------------------------------------------------------------------------


def _read(source: str | Path | Mapping[str, Any]) -> tuple[str | None, Any]:
    if isinstance(source, Mapping):
        return None, source
    if isinstance(source, str) and ("\n" in source or source.lstrip().startswith("{")):
        where, text = None, source
    else:
        path = Path(source)
        where = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise SessionError([("", f"cannot read {path}: {e.strerror or e}")], source=where) from e
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        raise SessionError([("", f"not valid YAML: {e}")], source=where) from e
    if len(docs) != 1:
        raise SessionError([("", f"expected exactly one YAML document, found {len(docs)}")], source=where)
    return where, docs[0]


def _name_of(data: Mapping[str, Any]) -> str | None:
    meta = data.get("metadata")
    name = meta.get("name") if isinstance(meta, Mapping) else None
    return name if isinstance(name, str) and name else None


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def _show(value: Any, limit: int = 80) -> str:
    try:
        text = json.dumps(value, default=str, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


_TYPE_ERRORS = {
    "string_type": "string",
    "int_type": "integer",
    "int_parsing": "integer",
    "int_from_float": "integer",
    "bool_type": "boolean",
    "bool_parsing": "boolean",
    "list_type": "array",
    "dict_type": "object",
    "model_type": "object",
    "model_attributes_type": "object",
}


def _problem(err: Mapping[str, Any]) -> tuple[str, str]:
    """One pydantic error as (path, message), worded like the apiserver's."""
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    path = _path(err["loc"])
    got = f" (got {_show(value)})"
    if kind == "missing":
        return path, "Required value"
    if kind == "extra_forbidden":
        return path, "unknown field (not declared in the schema; check the spelling)"
    if kind in _TYPE_ERRORS:
        return path, f"Invalid value: must be of type {_TYPE_ERRORS[kind]}, got {_type_name(value)}"
    if kind in ("enum", "literal_error"):
        allowed = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        return path, f"Unsupported value: {_show(value)}: supported values: " + ", ".join(
            f'"{a}"' for a in allowed
        )
    if kind == "greater_than_equal":
        return path, f"should be greater than or equal to {ctx['ge']}{got}"
    if kind == "less_than_equal":
        return path, f"should be less than or equal to {ctx['le']}{got}"
    if kind == "string_too_long":
        return path, f"Too long: may not be longer than {ctx['max_length']} characters"
    if kind == "string_too_short":
        return path, f"should be at least {ctx['min_length']} chars long{got}"
    if kind == "too_long":
        return path, f"Too many: must have at most {ctx['max_length']} items"
    if kind == "too_short":
        return path, f"should have at least {ctx['min_length']} items"
    if kind == "string_pattern_mismatch":
        return path, f"should match '{ctx['pattern']}'{got}"
    if kind.startswith(("datetime", "date_")):
        return path, f"must be an RFC 3339 date-time{got}"
    if kind in ("reel_rule", "int_or_string_type"):
        return path, err["msg"] if isinstance(value, Mapping | list) else f"{err['msg']}{got}"
    return path, err["msg"]
