"""A ProgressSink that writes the recorder's reports onto its RecordingSession's status, in the cluster.

The operator gives each recorder pod its own ServiceAccount, allowed ``get`` and ``patch`` on exactly one
object: ``recordingsessions/status`` of its session (``REEL_STATUS_TARGET=namespace/name``). This sink
sends JSON merge patches of ``.status`` to the API server with the pod's service-account token and CA
(where: settings.py),
through urllib (no Kubernetes client: it would cost memory in every recorder).

- Never blocks the media path: ``report`` merges the update into one pending patch (latest wins, so the
  "queue" is bounded by construction) and a background thread sends it.
- Throttled: a phase change is sent at once, anything else at most once per ``min_interval`` (2 s).
- Errors are logged (rate-limited), never raised; a failed patch is retried with the next one.
- At exit the pending patch is flushed (bounded by ``flush_timeout``), so the final phase gets out even when
  the process ends right after reporting it.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from .settings import Settings

log = logging.getLogger("reel.recorder.status")


#: The status fields the recorder owns (others in its reports, e.g. the detailed "reason", are not in the
#: schema; the operator reads them from the termination message).
FIELDS = ("phase", "recordingId", "startedAt", "stoppedAt", "stopReason", "message", "participants",
          "activeParticipants", "upload", "playlists", "manifest", "recorderStartedAt",
          "heartbeatAt", "spool", "composite", "room", "appliedGeneration")


def clean(value: Any) -> Any:
    """Drop None values (in a merge patch null deletes; in the schema nothing is nullable)."""
    if isinstance(value, Mapping):
        return {k: clean(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [clean(v) for v in value if v is not None]
    return value


def merge(base: dict, update: Mapping) -> dict:
    """RFC 7386 merge of two patches (mappings merge, anything else replaces)."""
    out = dict(base)
    for k, v in update.items():
        out[k] = merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def to_status(status: Mapping[str, Any]) -> dict[str, Any]:
    return clean({k: status[k] for k in FIELDS if k in status})


Sender = Callable[[dict], None]


class KubeStatusSink:
    def __init__(self, send: Sender, *, min_interval: float = 2.0, flush_timeout: float = 5.0,
                 clock: Callable[[], float] = time.monotonic):
        self._send = send
        self.min_interval = min_interval
        self.flush_timeout = flush_timeout
        self._clock = clock
        self._cond = threading.Condition()
        self._pending: dict = {}
        self._urgent = False
        self._sending = False
        self._last_phase: str | None = None
        self._last_sent = -1e9
        self._closed = False
        self._thread: threading.Thread | None = None
        self._errors = 0
        self.sent = 0

    @classmethod
    def for_pod(cls, settings: Settings, **kw) -> KubeStatusSink:
        """In a recorder pod: patches the status of ``settings.status_target`` with the pod's service account."""
        sink = cls(HttpPatcher(settings.status_url, settings.sa_dir), **kw)
        atexit.register(sink.close)
        return sink

    # -- the recorder side: never blocks on the network ----------------------------------------------------
    def report(self, event: str, status: dict) -> None:
        update = to_status(status)
        if not update:
            return
        with self._cond:
            if self._closed:
                return
            phase = update.get("phase")
            if phase is not None and phase != self._last_phase:
                self._urgent = True
                self._last_phase = phase
            self._pending = merge(self._pending, update)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="reel-status", daemon=True)
                self._thread.start()
            self._cond.notify()

    def close(self) -> None:
        """Send what is pending (bounded by flush_timeout) and stop the thread."""
        deadline = self._clock() + self.flush_timeout
        with self._cond:
            self._closed = True
            self._urgent = True
            self._cond.notify()
            while (self._pending or self._sending) and self._thread is not None:
                left = deadline - self._clock()
                if left <= 0:
                    log.warning("status: %d field(s) not sent at exit", len(self._pending))
                    break
                self._cond.wait(min(left, 0.1))

    # -- the sender thread -----------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._closed and not self._pending:
                        self._cond.notify_all()
                        return
                    if self._pending:
                        wait = 0.0 if self._urgent else self._last_sent + self.min_interval - self._clock()
                        if wait <= 0:
                            break
                        self._cond.wait(wait)
                    else:
                        self._cond.wait()
                patch, self._pending, self._urgent = self._pending, {}, False
                self._sending = True
            ok = self._deliver(patch)
            with self._cond:
                self._sending = False
                self._last_sent = self._clock()
                if not ok and not self._closed:
                    self._pending = merge(patch, self._pending)  # newer fields win; retried next round
                self._cond.notify_all()

    def _deliver(self, patch: dict) -> bool:
        try:
            self._send({"status": patch})
        except Exception as err:
            self._errors += 1
            if self._errors <= 3 or self._errors % 30 == 0:
                log.warning("status: cannot patch the session (%d failure(s)): %s", self._errors, err)
            return False
        self.sent += 1
        if self._errors:
            log.info("status: patching works again after %d failure(s)", self._errors)
            self._errors = 0
        return True


class ApiServerRequests:
    """Requests to one API server URL with the pod's service-account token, re-read each time (the kubelet
    rotates it) and its CA. Errors come back as RuntimeError with the API server's message."""

    def __init__(self, url: str, sa_dir: str, timeout: float = 10.0):
        self.url = url
        self.sa_dir = sa_dir
        self.timeout = timeout
        self._ssl = ssl.create_default_context(cafile=os.path.join(sa_dir, "ca.crt")) \
            if url.startswith("https:") else None

    def request(self, method: str, body: dict | None = None) -> bytes:
        """``body``: a JSON merge patch (sent as such); returns the response body."""
        with open(os.path.join(self.sa_dir, "token"), encoding="ascii") as f:
            token = f.read().strip()
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/merge-patch+json"
        req = urllib.request.Request(self.url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=self._ssl) as resp:
                return resp.read()
        except urllib.error.HTTPError as err:
            detail = err.read()[:300].decode(errors="replace")
            raise RuntimeError(f"HTTP {err.code} from the API server: {detail}") from None


class HttpPatcher(ApiServerRequests):
    """PATCH (merge-patch) the status URL."""

    def __call__(self, body: dict) -> None:
        self.request("PATCH", body)
