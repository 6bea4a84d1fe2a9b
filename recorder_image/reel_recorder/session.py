"""The session as the recorder uses it: validated once by reel_api, then read through a light view.

Validation needs pydantic (reel_api's models), which costs the process ~12 MiB of memory for the whole
recording. So ``reel-recorder`` validates first, then replaces itself (``exec``, same PID) with a fresh
interpreter that receives the validated manifest (defaults filled in) as JSON and never imports pydantic.
"""

from __future__ import annotations

import json
import re
from typing import Any

VALIDATED_ENV = "REEL_VALIDATED_SESSION"
_CAMEL = re.compile(r"_([a-z])")


def validated_manifest(source) -> dict[str, Any]:
    """The manifest with defaults applied (camelCase, status dropped); raises reel_api.SessionError."""
    from reel_api import load_session  # the only pydantic use of the recorder, before the exec

    return load_session(source).to_dict(status=False)


class View:
    """Attribute access to a camelCase mapping with snake_case names: ``view.max_idle_seconds``.

    Missing keys read as None (the Kubernetes form leaves unset optional fields out).
    """

    __slots__ = ("_data",)

    def __init__(self, data: dict[str, Any]):
        self._data = data

    def __getattr__(self, name: str) -> Any:
        value = self._data.get(_CAMEL.sub(lambda m: m.group(1).upper(), name))
        return View(value) if isinstance(value, dict) else value

    def __repr__(self) -> str:
        return f"View({self._data!r})"

    def to_dict(self) -> dict[str, Any]:
        return self._data


def session_view(text: str) -> View:
    return View(json.loads(text))
