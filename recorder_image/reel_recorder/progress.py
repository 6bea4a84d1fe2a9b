"""Progress reports: what the recorder tells the outside world while it runs.

The recorder calls a ``ProgressSink`` with plain dicts shaped like RecordingSession status fields. On its
own it prints JSON lines; the operator integration supplies a sink that patches the session's status.
"""

from __future__ import annotations

import json
import sys
import threading
from datetime import UTC, datetime
from typing import Protocol, TextIO


class ProgressSink(Protocol):
    def report(self, event: str, status: dict) -> None: ...


class JsonLinesProgress:
    """One JSON object per line: ``{"ts": ..., "event": ..., "status": {...}}``."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stdout
        self._lock = threading.Lock()

    def report(self, event: str, status: dict) -> None:
        line = json.dumps({"ts": now_iso(), "event": event, "status": status}, default=str)
        with self._lock:
            self.stream.write(line + "\n")
            self.stream.flush()


class FanOut:
    def __init__(self, *sinks: ProgressSink):
        self.sinks = sinks

    def report(self, event: str, status: dict) -> None:
        for s in self.sinks:
            s.report(event, status)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
