"""What the webhook delivery of a session keeps across operator restarts: the annotation ``reel.dev/webhook`` on
the session (JSON), written before an event is first sent and after it was delivered or dropped.

    {"v": 1, "seq": 12, "told": {...events.derive's summary...}, "pending": [{...envelope...}, ...],
     "delivered": 11, "dropped": 0}

``seq`` is the last sequence number given out, ``pending`` the events given a number but not delivered (nor
dropped) yet, oldest first. A restarted operator sends ``pending`` again (same ids: a receiver that got one
before the restart drops it) and derives what happened meanwhile from ``told``: at-least-once, in order.
The recorder cannot write it (it may patch only the status). An annotation holds at most 256 KiB with the
others: above ``MAX_BYTES`` the oldest pending ``upload.progress`` events are left out (a later one says more).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reel_api.vocabulary import WebhookEvent

ANNOTATION = "reel.dev/webhook"
VERSION = 1
MAX_BYTES = 128 * 1024


@dataclass
class Journal:
    seq: int = 0
    told: dict[str, Any] = field(default_factory=dict)
    pending: list[dict[str, Any]] = field(default_factory=list)
    delivered: int = 0
    dropped: int = 0

    def encode(self) -> str:
        data = {"v": VERSION, "seq": self.seq, "told": self.told, "pending": self.pending,
                "delivered": self.delivered, "dropped": self.dropped}
        text = json.dumps(data, separators=(",", ":"), sort_keys=True)
        while len(text.encode()) > MAX_BYTES:
            progress = [e for e in data["pending"] if e.get("type") == WebhookEvent.UPLOAD_PROGRESS]
            victim = progress[0] if progress else (data["pending"][0] if data["pending"] else None)
            if victim is None:
                break
            data["pending"] = [e for e in data["pending"] if e is not victim]
            text = json.dumps(data, separators=(",", ":"), sort_keys=True)
        return text


def decode(meta: Mapping[str, Any]) -> Journal | None:
    """The journal in a session's metadata; None when there is none (or it cannot be read)."""
    text = (meta.get("annotations") or {}).get(ANNOTATION)
    if not text:
        return None
    try:
        data = json.loads(text)
        if data.get("v") != VERSION:
            return None
        return Journal(seq=int(data.get("seq") or 0), told=dict(data.get("told") or {}),
                       pending=[dict(e) for e in data.get("pending") or []],
                       delivered=int(data.get("delivered") or 0), dropped=int(data.get("dropped") or 0))
    except (ValueError, TypeError, AttributeError):
        return None


def patch(journal: Journal | None) -> dict[str, Any]:
    """The merge patch that writes (None: removes) the annotation."""
    return {"metadata": {"annotations": {ANNOTATION: journal.encode() if journal is not None else None}}}
