"""Validation rules written once for both sides: CEL for the apiserver, Python for everyone else.

A `Rule` is attached to a field with `Annotated[T, Rule(...)]`, or to a model through its `reel_rules`
class variable. It carries

- `rule`: the CEL expression that goes into the CRD as `x-kubernetes-validations[].rule` (`self` is the value
  of the node the rule sits on, `oldSelf` its previous value for transition rules);
- `message`: what the user is told, the same text from the apiserver and from `load_session`;
- `check`: the same predicate in Python over the validated value (a model instance for object rules);
- `check_transition`: for rules that use `oldSelf`: `(old, new) -> bool`; used by `validate_update`.

Regular expressions are written once and used by both: CEL's `matches()` is RE2 with search semantics, so
patterns are anchored with `^`/`$`, stick to the RE2 subset, and `re2_search` gives Python the same meaning
(Python's `$` would also match before a trailing newline).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic_core import PydanticCustomError, core_schema

#: The error type of a failed `Rule` in pydantic's errors.
RULE_ERROR = "reel_rule"


@cache
def _compile(pattern: str) -> re.Pattern[str]:
    # `$` as "end of text" like RE2 (and not "before a final newline" as Python's `$`).
    return re.compile(re.sub(r"(?<!\\)\$", r"\\Z", pattern))


def re2_search(pattern: str, value: str) -> bool:
    """True when `pattern` matches somewhere in `value`, as CEL's `value.matches(pattern)`."""
    return _compile(pattern).search(value) is not None


def cel_string(value: str) -> str:
    """A CEL single-quoted string literal for `value`."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def cel_matches(pattern: str, target: str = "self") -> str:
    """The CEL expression `target.matches('<pattern>')`."""
    return f"{target}.matches({cel_string(pattern)})"


@dataclass(frozen=True)
class Rule:
    """One validation rule, enforced by the apiserver (CEL) and by the models (Python)."""

    rule: str
    message: str
    check: Callable[[Any], bool] | None = field(default=None, compare=False)
    check_transition: Callable[[Any, Any], bool] | None = field(default=None, compare=False)

    @property
    def is_transition(self) -> bool:
        return "oldSelf" in self.rule

    def to_cel(self) -> dict[str, str]:
        """The entry for `x-kubernetes-validations`."""
        return {"rule": self.rule, "message": self.message}

    def error(self) -> PydanticCustomError:
        return PydanticCustomError(RULE_ERROR, self.message)

    # pydantic integration, for `Annotated[T, Rule(...)]`
    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        schema = handler(source)
        if self.check is None:
            return schema
        check = self.check

        def validate(value: Any) -> Any:
            if value is not None and not check(value):
                raise self.error()
            return value

        return core_schema.no_info_after_validator_function(validate, schema)

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> Any:
        json_schema = dict(handler(schema))
        # Not resolved through $ref on purpose: a rule on a field belongs to that field, not to every use of
        # the model (spec.storage is immutable, spec.backupStorage is not). crd.py merges these siblings.
        json_schema["x-kubernetes-validations"] = [
            *json_schema.get("x-kubernetes-validations", []),
            self.to_cel(),
        ]
        return json_schema
