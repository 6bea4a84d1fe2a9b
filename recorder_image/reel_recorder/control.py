"""What the session asks of the recorder while it runs: pausing (``spec.paused``), the limits and tag it applies
live (``LIVE_FIELDS``, ``spec.tag``), and what a SIGTERM means.

Each read also carries the session's ``metadata.generation`` (``PauseControl.generation``); the Recorder's loop,
once it has used the values of a generation (paused, limits, tag: on the next tick after the read), reports it
as ``status.appliedGeneration``, and only then does the operator move ``status.observedGeneration`` to it
(reel_operator/health.observed_generation).

The recorder reads ``PauseControl.paused`` on every tick of its loop. Who sets it:
- in a recorder pod, ``SpecPoller`` reads the session's ``spec.paused`` from the API server every few seconds
  (a GET of ``recordingsessions/NAME/status``, which returns the whole object: the one read its
  ServiceAccount already has, so a recorder still sees nothing but its own session);
- run on its own, ``SIGUSR1`` pauses and ``SIGUSR2`` resumes (cli.py); the session file's ``spec.paused``
  is the state at start.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from collections.abc import Callable, Mapping

from reel_api.vocabulary import StopReason

from .k8s_status import ApiServerRequests
from .settings import Settings

log = logging.getLogger("reel.recorder.control")


#: spec.recording fields the recorder applies while recording (API name -> the session view's name); every other
#: field the recording is set up with is immutable (the CRD's transition rules, reel_api.models.fixed).
LIVE_FIELDS = {"maxIdleSeconds": "max_idle_seconds", "maxDurationSeconds": "max_duration_seconds"}


class PauseControl:
    def __init__(self, paused: bool = False, generation: int | None = None):
        """``generation``: metadata.generation of the spec the recorder starts with (the session it was given)."""
        self._paused = bool(paused)
        self.generation = generation  # metadata.generation of the spec last read (its values are the ones held)
        self._live: dict = {}  # LIVE_FIELDS and "tag" as last read from the session (empty before the first read)
        self._view: tuple | None = None  # (recording, its live values, the recording with them)

    @property
    def paused(self) -> bool:
        return self._paused

    def set(self, paused: bool) -> None:
        if bool(paused) != self._paused:
            log.info("spec.paused is now %s", bool(paused))
        self._paused = bool(paused)

    def apply(self, spec: Mapping, generation: int | None = None) -> None:
        """Take the live values of the session's current ``spec`` (of metadata.generation ``generation``, when
        known: a generation is never taken back, a late read of an older one is ignored)."""
        if generation is not None and self.generation is not None and generation < self.generation:
            return
        recording = spec.get("recording") or {}
        live = {name: recording[key] for key, name in LIVE_FIELDS.items()
                if isinstance(recording.get(key), int) and not isinstance(recording.get(key), bool)}
        live["tag"] = spec.get("tag")
        for name, value in live.items():
            if self._live.get(name, value) != value:
                log.info("spec: %s is now %s", name, value)
        self._live = live
        if generation is not None:
            self.generation = generation

    def live(self, spec):
        """(spec.recording with the live limits, the tag) of the session view ``spec``, as the recorder's loop uses
        them on every tick."""
        limits = {k: v for k, v in self._live.items() if k != "tag"}
        if not limits:
            return spec.recording, self._live.get("tag", spec.tag)
        if self._view is None or self._view[0] is not spec.recording or self._view[1] != limits:
            self._view = (spec.recording, limits, dataclasses.replace(spec.recording, **limits))
        return self._view[2], self._live.get("tag", spec.tag)


Fetcher = Callable[[], Mapping]


class SpecPoller:
    """A daemon thread that copies the session's ``spec.paused`` and live values into a PauseControl every
    ``interval`` s."""

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
        spec = (body or {}).get("spec") or {}
        generation = ((body or {}).get("metadata") or {}).get("generation")
        generation = generation if isinstance(generation, int) and not isinstance(generation, bool) else None
        if generation is not None and self.control.generation is not None and generation < self.control.generation:
            return  # an older read than the one held (a stale cache behind the API server)
        self.control.set(bool(spec.get("paused", False)))
        self.control.apply(spec, generation)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()


def poller_for(settings: Settings, control: PauseControl) -> SpecPoller | None:
    """In a recorder pod (``settings.in_pod``): a started SpecPoller; else None."""
    if not settings.in_pod:
        return None
    getter = HttpGetter(settings.status_url, settings.sa_dir)
    return SpecPoller(getter, control, interval=settings.spec_poll_seconds).start()


def stop_cause_for(settings: Settings) -> Callable[[], str | None] | None:
    """In a recorder pod: what a SIGTERM means, read from the session when it arrives. ``StopReason.DELETED``
    (the session is being deleted), ``StopReason.REQUESTED`` (spec.stop), or None: nobody asked the recording
    to stop (a node drain, an eviction, ``kubectl delete pod``), so it is an interruption the operator resumes.
    The signal alone cannot tell these apart. Run on its own (not in a pod): None here, every SIGTERM is a stop."""
    if not settings.in_pod:
        return None
    getter = HttpGetter(settings.status_url, settings.sa_dir)

    def cause() -> str | None:
        try:
            body = getter()
        except Exception as err:  # cannot tell: keep the recording open (the operator ends it if it was a stop)
            log.warning("SIGTERM: cannot read the session (%s): treated as an interruption", err)
            return None
        if (body.get("metadata") or {}).get("deletionTimestamp"):
            return StopReason.DELETED
        if (body.get("spec") or {}).get("stop"):
            return StopReason.REQUESTED
        return None

    return cause


class HttpGetter(ApiServerRequests):
    """GET the session (through its status URL) as JSON."""

    def __init__(self, url: str, sa_dir: str, timeout: float = 5.0):
        super().__init__(url, sa_dir, timeout)

    def __call__(self) -> Mapping:
        return json.loads(self.request("GET"))
