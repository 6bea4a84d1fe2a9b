"""Helpers shared by the storage integration tests."""

from __future__ import annotations

import itertools
import threading
import time

from tests.support.waiting import wait_for


class SyntheticRecorder:
    """Closes one segment every ``interval`` seconds, round-robin over the recording's participants."""

    def __init__(self, rec, uploader, interval: float = 0.1) -> None:
        self.rec = rec
        self.uploader = uploader
        self.interval = interval
        self.closed: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="synthetic-recorder")
        self.max_call_seconds = 0.0

    def _run(self) -> None:
        for participant in itertools.cycle(list(self.rec.participants)):
            if self._stop.is_set():
                return
            t0 = time.monotonic()
            self.closed.append(self.rec.close_segment(self.uploader, participant))
            self.max_call_seconds = max(self.max_call_seconds, time.monotonic() - t0)
            self._stop.wait(self.interval)

    def start(self) -> SyntheticRecorder:
        self._thread.start()
        return self

    def wait_segments(self, n: int, timeout: float = 30.0) -> None:
        """Wait until ``n`` more segments have been closed."""
        target = len(self.closed) + n
        wait_for(lambda: len(self.closed) >= target, timeout, what=f"{n} more segments closed")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.rec.end(self.uploader)
