"""What a session may ask for in its ``reel.dev/recorder-resources`` annotation: a pure check against the
maxima of the chart (``recorder.maxResources`` -> ``REEL_RECORDER_MAX_RESOURCES``).

A session's author is often not who may size pods, so the annotation may only move the recorder's requests and
limits within bounds (``override_problems``):

- only ``cpu``, ``memory`` and ``ephemeral-storage``: extended resources (``nvidia.com/gpu``, ``hugepages-2Mi``,
  anything else) are refused;
- every request and limit asked for must be a Kubernetes quantity (parsed by the Kubernetes client's
  ``parse_quantity``, never by hand), not negative, and at most the maximum of its resource (a resource without
  a maximum has none);
- a limit cannot be removed: ``null``, ``""`` or a zero limit is refused when the defaults have that limit (a
  zero or empty limit is refused in any case: it would mean "no limit");
- after merging over the defaults, no request may exceed its limit (the API server would refuse the pod).

Each problem names the field (``limits.memory``), what was asked and the maximum; the operator fails the session
``InvalidRecorderSettings`` with them (``podspec.resources`` raises them as a ``BuildError``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from kubernetes.utils.quantity import parse_quantity

#: The only resources a session may ask for.
ALLOWED_RESOURCES = ("cpu", "memory", "ephemeral-storage")
#: Maxima when the operator's environment sets none (the chart's recorder.maxResources defaults).
DEFAULT_MAX_RESOURCES = {"cpu": "4", "memory": "4Gi", "ephemeral-storage": "20Gi"}
ALLOWED_TEXT = "cpu, memory and ephemeral-storage"
PARTS = ("requests", "limits")
WHERE_MAXIMA = "chart recorder.maxResources"
#: The shape of a quantity string (the same pattern as charts/reel/values.schema.json's quantities).
QUANTITY_SHAPE = re.compile(r"([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)")


def quantity(value: Any) -> Decimal:
    """``value`` (a string or a number) as a finite Decimal, parsed by the Kubernetes client; ValueError when it
    is not a Kubernetes quantity. Strings must first match the shape the chart's schema gives quantities
    (``QUANTITY_SHAPE``): the client's parser alone would take " 1 Gi", "1_000" or "NaN", which the API server
    refuses in a pod."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"{value!r} is not a quantity")
    if isinstance(value, str) and not QUANTITY_SHAPE.fullmatch(value):
        raise ValueError(f"{value!r} is not a quantity")
    parsed = parse_quantity(value)
    if not parsed.is_finite():
        raise ValueError(f"{value!r} is not a quantity")
    return parsed


def maxima_problems(maxima: Mapping[str, Any]) -> list[str]:
    """What is wrong with configured maxima (settings): unknown resources, values that are not quantities."""
    problems = []
    for name, value in maxima.items():
        if name not in ALLOWED_RESOURCES:
            problems.append(f"{name}: only {ALLOWED_TEXT} have maxima")
            continue
        try:
            if quantity(value) <= 0:
                problems.append(f"{name}: the maximum must be positive, not {value!r}")
        except ValueError:
            problems.append(f"{name}: {value!r} is not a Kubernetes quantity")
    return problems


def override_problems(override: Mapping[str, Any], defaults: Mapping[str, Mapping[str, str]],
                      maxima: Mapping[str, str]) -> list[str]:
    """Every reason to refuse ``override`` (the annotation's JSON: {"requests": {...}, "limits": {...}}, its
    shape already checked by the caller) given the ``defaults`` it is merged over ({"requests": {...},
    "limits": {...}}) and the ``maxima`` (resource -> quantity). Empty: the override is allowed."""
    problems: list[str] = []
    merged = {part: dict(defaults.get(part) or {}) for part in PARTS}
    for part in PARTS:
        values = override.get(part) or {}
        for name, value in values.items():
            field = f"{part}.{name}"
            if name not in ALLOWED_RESOURCES:
                problems.append(f"{field}: only {ALLOWED_TEXT} may be asked for (extended "
                                f"resources such as nvidia.com/gpu or hugepages are not), asked {value!r}")
                continue
            removed = value is None or value == ""
            if removed and part == "requests":
                merged[part].pop(name, None)  # the request falls back to the limit (Kubernetes' rule)
                continue
            if removed:
                default = (defaults.get("limits") or {}).get(name)
                problems.append(f"{field}: removing the limit is not allowed (the default is "
                                f"{default or 'none'}; at most {maxima.get(name, 'any')})")
                continue
            try:
                asked = quantity(value)
            except ValueError:
                problems.append(f"{field}: {value!r} is not a Kubernetes quantity (e.g. 500m, 1, 512Mi)")
                continue
            if asked < 0:
                problems.append(f"{field}: asked {value}, a quantity must not be negative")
                continue
            if part == "limits" and asked == 0:
                problems.append(f"{field}: asked {value}, a zero limit means no limit: removing the limit is not "
                                f"allowed (at most {maxima.get(name, 'any')})")
                continue
            limit = maxima.get(name)
            if limit is not None and asked > quantity(limit):
                problems.append(f"{field}: asked {value}, above the maximum {limit} ({WHERE_MAXIMA})")
                continue
            merged[part][name] = str(value)
    if problems:
        return problems
    for name, request in merged["requests"].items():
        limit = merged["limits"].get(name)
        if limit is not None and quantity(request) > quantity(limit):
            problems.append(f"requests.{name}: asked {request}, above limits.{name} {limit} (a request may not "
                            "exceed its limit)")
    return problems
