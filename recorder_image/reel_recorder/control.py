"""Pausing: whether the recording should write media now (``spec.paused``), and where that comes from.

The recorder reads ``PauseControl.paused`` on every tick of its loop. Who sets it:
- in a recorder pod, ``SpecPoller`` reads the session's ``spec.paused`` from the API server every few seconds
  (a GET of ``recordingsessions/NAME/status``, which returns the whole object: the one read its
  ServiceAccount already has, so a recorder still sees nothing but its own session);
- run on its own, ``SIGUSR1`` pauses and ``SIGUSR2`` resumes (cli.py); the session file's ``spec.paused``
  is the state at start.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping

from .k8s_status import ApiServerRequests
from .settings import Settings

log = logging.getLogger("reel.recorder.control")


class PauseControl:
    def __init__(self, paused: bool = False):
        self._paused = bool(paused)

    @property
    def paused(self) -> bool:
        return self._paused

    def set(self, paused: bool) -> None:
        if bool(paused) != self._paused:
            log.info("spec.paused is now %s", bool(paused))
        self._paused = bool(paused)


Fetcher = Callable[[], Mapping]


class SpecPoller:
    """A daemon thread that copies the session's ``spec.paused`` into a PauseControl every ``interval`` s."""

    def __init__(self, fetch: Fetcher, control: PauseControl, *, interval: float = 2.0):
        self.fetch = fetch
        self.control = control
        self.interval = interval
        self.polls = 0
        self._errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="reel-spec", daemon=True)

    def start(self) -> SpecPoller:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def poll(self) -> None:
        try:
            body = self.fetch()
        except Exception as err:  # the API server may be briefly away: keep the current state, say so sparingly
            self._errors += 1
            if self._errors <= 3 or self._errors % 30 == 0:
                log.warning("cannot read the session's spec (%d failure(s)): %s", self._errors, err)
            return
        self._errors = 0
        self.polls += 1
        self.control.set(bool(((body or {}).get("spec") or {}).get("paused", False)))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()


def poller_for(settings: Settings, control: PauseControl) -> SpecPoller | None:
    """In a recorder pod (``settings.in_pod``): a started SpecPoller; else None."""
    if not settings.in_pod:
        return None
    getter = HttpGetter(settings.status_url, settings.sa_dir)
    return SpecPoller(getter, control, interval=settings.spec_poll_seconds).start()


class HttpGetter(ApiServerRequests):
    """GET the session (through its status URL) as JSON."""

    def __init__(self, url: str, sa_dir: str, timeout: float = 5.0):
        super().__init__(url, sa_dir, timeout)

    def __call__(self) -> Mapping:
        return json.loads(self.request("GET"))
