"""Fixtures every unit test gets."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def fresh_room_keys(monkeypatch):
    """lock's memo of room keys is per (uid, generation): the fake sessions of different tests share uids."""
    from reel_operator import lock
    monkeypatch.setattr(lock, "_KEYS", {})
