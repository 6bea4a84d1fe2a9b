"""Building and finding status conditions: the one shape every condition Reel writes has (status.py,
health.py, room_faults.py build them; merge_conditions in status.py adds the times and observedGeneration)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from reel_api.vocabulary import ConditionStatus


def condition(ctype: str, ok: bool, reason: str, message: str = "") -> dict[str, Any]:
    """A condition without times: True when ``ok``, else False."""
    return {"type": ctype, "status": ConditionStatus.TRUE if ok else ConditionStatus.FALSE, "reason": reason,
            "message": message}


def find(conds: Iterable[Mapping[str, Any]] | None, ctype: str) -> Mapping[str, Any] | None:
    """The condition of type ``ctype`` in ``conds`` (None when there is none)."""
    return next((c for c in conds or [] if c.get("type") == ctype), None)
