"""RFC 7386 JSON merge patch, for building test objects from a base and a patch (tests/data/invalid_sessions.yaml)."""

from __future__ import annotations

import copy


def merge_patch(target, patch):
    """``target`` with ``patch`` applied: mappings merge recursively, ``None`` deletes a key, anything else replaces.
    Neither argument is modified."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out
