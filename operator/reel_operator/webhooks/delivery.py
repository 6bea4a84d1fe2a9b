"""Delivering a session's webhook events: in order, signed, retried with backoff, never in kopf's way.

``observe(body)`` is called from the session watch handler with every session event: it derives the new events
(events.derive), numbers them, writes the journal (the annotation reel.dev/webhook, before anything is sent:
journal.py) and returns; it never waits for a receiver. Worker threads (``REEL_WEBHOOK_WORKERS``) send: each
takes a session whose next event is due, POSTs it (http.client, no redirects followed, no proxy), and on a 2xx
moves to the session's next event; anything else is tried again after a backoff (retry.py) until the retry
bound, then dropped (a Warning Event ``WebhookDropped``). A session is served by one worker at a time, so its
events arrive in sequence order; one slow or failing receiver holds up only its own sessions' events.

Before each attempt the URL is checked against the endpoint rules again (resolved anew: endpoints.py), and the
signing key read from the Secret (cached 60 s; the operator needs ``get`` on Secrets: chart ``webhooks.enabled``).
A missing Secret, a refused URL or a receiver that fails: an attempt that failed, retried the same way, a
Warning Event ``WebhookFailing`` at the first failure of a streak, and ``reel_webhook_deliveries_total``
counting each outcome.

Threads and locks: one Condition guards every session's queue state (``_cond``); API writes (the journal) and
HTTP requests happen outside it, the journal writes of a session under that session's ``write_lock`` so two
writes never cross.
"""

from __future__ import annotations

import contextvars
import http.client
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from reel_api.vocabulary import TERMINAL_PHASES, ConditionReason

from .. import status as st
from ..endpoints import WEBHOOK_FIELD, EndpointPolicy, resolve_host, url_problem
from . import journal as jr
from . import signing
from .events import derive, envelope, waiting_for_final
from .retry import RetryPolicy, delivered, retry_after_seconds

log = logging.getLogger("reel.operator.webhooks")
USER_AGENT = "reel-operator-webhooks/1"
KEY_CACHE_SECONDS = 60.0
#: A Failed session's event waits this long at most for the detailed reason (events.derive's settle).
FINAL_SETTLE_SECONDS = 20.0
WARNING = "Warning"


@dataclass(frozen=True)
class Answer:
    """What one attempt got: an HTTP status (None: no answer), the receiver's Retry-After, an error text."""

    status: int | None
    retry_after: float | None = None
    error: str = ""


Send = Callable[[str, Mapping[str, str], bytes, float], Answer]


def http_send(url: str, head: Mapping[str, str], body: bytes, timeout: float) -> Answer:
    """POST ``body`` to ``url``; redirects are not followed (a 3xx is a failure: it could lead anywhere)."""
    parts = urlsplit(url)
    conn_type = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = conn_type(parts.hostname, parts.port, timeout=timeout)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        conn.request("POST", path, body=body, headers={**head, "user-agent": USER_AGENT})
        resp = conn.getresponse()
        resp.read(65536)
        text = "" if delivered(resp.status) else f"HTTP {resp.status} {resp.reason}"
        return Answer(resp.status, retry_after_seconds(resp.getheader("retry-after")), text)
    except (OSError, http.client.HTTPException) as err:
        return Answer(None, None, f"{type(err).__name__}: {err}")
    finally:
        conn.close()


@dataclass(frozen=True)
class Target:
    url: str
    secret_name: str
    secret_key: str


def target_of(spec: Mapping[str, Any] | None) -> Target | None:
    """spec.notify.webhook of a session body (plain dict), or None."""
    hook = ((spec or {}).get("notify") or {}).get("webhook")
    if not hook or not hook.get("url"):
        return None
    ref = hook.get("secretRef") or {}
    return Target(url=hook["url"], secret_name=ref.get("name") or "", secret_key=ref.get("key") or "")


@dataclass
class _Session:
    meta: dict[str, Any]
    journal: jr.Journal
    target: Target
    final: bool = False
    unsaved: bool = False  # events numbered but not in the journal yet: not sent before they are
    attempts: int = 0
    first_attempt: float | None = None
    due: float = 0.0
    busy: bool = False
    failing: bool = False
    gone: bool = False
    held: Mapping[str, Any] | None = None  # the body whose final event derive held back, and since when
    held_since: float = 0.0
    write_lock: threading.Lock = field(default_factory=threading.Lock)


class Delivery:
    def __init__(self, kube, settings, metrics=None, *, post_event: Callable[..., None] | None = None,
                 send: Send = http_send, resolve=None, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], datetime] = st.now_utc):
        self.kube, self.metrics, self.send = kube, metrics, send
        self.post_event = post_event or (lambda *a: None)
        self.retry = RetryPolicy.from_settings(settings)
        self.endpoints = EndpointPolicy.from_settings(settings)
        self.resolve = resolve or resolve_host
        self.timeout = settings.webhook_timeout_seconds
        self.progress_every = settings.webhook_progress_seconds
        self.workers = settings.webhook_workers
        self.clock, self.wall = clock, wall
        self._cond = threading.Condition()
        self._sessions: dict[tuple[str, str], _Session] = {}
        self._keys: dict[tuple[str, str, str], tuple[bytes, float]] = {}
        self._threads: list[threading.Thread] = []
        self._stop = False
        self._post_context = contextvars.copy_context()

    # -- the watch side: derive, number, journal; never waits for a receiver -------------------------------
    def observe(self, body: Mapping[str, Any]) -> None:
        """A watch event of a session. Never raises: a webhook problem must not stop the session's handling."""
        try:
            self._observe(body)
        except Exception:
            log.exception("webhook events of %s/%s not derived", body["metadata"].get("namespace"),
                          body["metadata"].get("name"))

    def _observe(self, body: Mapping[str, Any], settle: bool = False) -> None:
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        target = target_of(body.get("spec"))
        status = body.get("status") or {}
        self._post_context = contextvars.copy_context()  # a kopf handler's: kopf.event works from it (below)
        with self._cond:
            s = self._sessions.get(key)
            if s is not None and s.meta.get("uid") != meta.get("uid"):
                s = None  # a new session of the same name
            if target is None:
                self._sessions.pop(key, None)  # no webhook (or it was removed): nothing (more) is sent
                self._gauge()
                return
            if s is None:
                # First sight (also after an operator restart): go on from the journal, if there is one.
                s = _Session(meta={k: meta.get(k) for k in ("namespace", "name", "uid")},
                             journal=jr.decode(meta) or jr.Journal(), target=target)
                self._sessions[key] = s
            s.target = target
            now = self.wall()
            events, told = derive(s.journal.told, status, now, progress_every=self.progress_every, settle=settle)
            s.journal.told = told
            if waiting_for_final(told, status):
                s.held, s.held_since = body, s.held_since if s.held is not None else self.clock()
            else:
                s.held = None
            for event in events:
                s.journal.seq += 1
                s.journal.pending.append(envelope(meta, status, s.journal.seq, event, now))
            s.final = status.get("phase") in TERMINAL_PHASES
            if events:
                s.unsaved = True
            self._gauge()
        if events:
            self._persist(s)
        with self._cond:
            self._forget_if_done(key, s)
            self._cond.notify_all()

    def forget(self, namespace: str, name: str) -> None:
        """The session was deleted: what is queued is still sent (from memory), nothing is written back."""
        with self._cond:
            s = self._sessions.get((namespace, name))
            if s is not None:
                s.gone = True
                self._forget_if_done((namespace, name), s)

    def pending(self) -> int:
        with self._cond:
            return sum(len(s.journal.pending) for s in self._sessions.values())

    # -- workers ---------------------------------------------------------------------------------------------
    def start(self) -> Delivery:
        for i in range(self.workers):
            t = threading.Thread(target=self._worker, name=f"reel-webhooks-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout)

    def _worker(self) -> None:
        while True:
            with self._cond:
                if self._stop:
                    return
                s, wait = self._pick_locked()
                if s is None:
                    self._cond.wait(timeout=wait)
                    now = self.clock()
                    settle = [x.held for x in self._sessions.values()
                              if x.held is not None and now - x.held_since >= FINAL_SETTLE_SECONDS]
                else:
                    s.busy, settle = True, []
            for body in settle:  # a Failed session whose detailed reason did not come: tell it as it is
                self._observe(body, settle=True)
            if s is None:
                continue
            try:
                self._serve(s)
            except Exception:  # a bug must not end the worker
                log.exception("webhook delivery for %s/%s failed unexpectedly", s.meta["namespace"], s.meta["name"])
                with self._cond:
                    s.due = self.clock() + self.retry.cap
            finally:
                with self._cond:
                    s.busy = False
                    self._forget_if_done((s.meta["namespace"], s.meta["name"]), s)
                    self._cond.notify_all()

    def _pick_locked(self) -> tuple[_Session | None, float]:
        now, best, wait = self.clock(), None, 1.0
        for s in self._sessions.values():
            if s.busy or not s.journal.pending or (s.unsaved and not s.gone):
                continue
            if s.due <= now and (best is None or s.due < best.due):
                best = s
            wait = min(wait, max(0.01, s.due - now))
        return best, wait

    def _serve(self, s: _Session) -> None:
        with self._cond:
            head, target = s.journal.pending[0], s.target
            if s.first_attempt is None:
                s.first_attempt = self.clock()
        body = json.dumps(head, separators=(",", ":")).encode()
        answer = self._attempt(s, target, head["id"], body)
        now = self.clock()
        event: tuple[str, str] | None = None
        with self._cond:
            if delivered(answer.status):
                self._done_locked(s)
                s.journal.delivered = head["sequence"]
                s.failing = False
                self._count("delivered")
                if self.metrics is not None:
                    self.metrics.webhook_latency.observe(max(0.0, (self.wall() - _parse(head["time"])).total_seconds()))
            elif self.retry.gives_up(s.first_attempt, now):
                self._done_locked(s)
                s.journal.dropped += 1
                self._count("dropped")
                event = (ConditionReason.WEBHOOK_DROPPED, f"event {head['sequence']} ({head['type']}) was not "
                         f"delivered to {target.url} within {self.retry.give_up_after:.0f} s and is dropped; last "
                         f"error: {answer.error}")
            else:
                s.attempts += 1
                s.due = now + self.retry.delay(s.attempts, answer.retry_after)
                self._count("failed")
                if not s.failing:
                    s.failing = True
                    event = (ConditionReason.WEBHOOK_FAILING, f"event {head['sequence']} ({head['type']}) to "
                             f"{target.url}: {answer.error}; retrying with backoff for up to "
                             f"{self.retry.give_up_after:.0f} s (later events wait, in order)")
            changed = not s.journal.pending or s.journal.pending[0] is not head
            self._gauge()
        if event is not None:
            log.warning("%s/%s: %s", s.meta["namespace"], s.meta["name"], event[1])
            # kopf.event needs the context of a kopf handler (its Event queue and loop): a worker thread has none.
            self._post_context.copy().run(self.post_event, {"metadata": s.meta}, WARNING, *event)
        if changed:
            self._persist(s)

    def _done_locked(self, s: _Session) -> None:
        s.journal.pending.pop(0)
        s.attempts, s.first_attempt, s.due = 0, None, self.clock()

    def _attempt(self, s: _Session, target: Target, msg_id: str, body: bytes) -> Answer:
        problem = url_problem(WEBHOOK_FIELD, target.url, self.endpoints, self.resolve)
        if problem:
            return Answer(None, None, problem)
        try:
            key = self._signing_key(s.meta["namespace"], target)
        except Exception as err:  # missing Secret or key, no RBAC, API down: an attempt that failed
            return Answer(None, None, f"cannot read the signing key (Secret {target.secret_name!r}, key "
                          f"{target.secret_key!r}): {err}")
        return self.send(target.url, signing.headers(key, msg_id, int(self.wall().timestamp()), body), body,
                         self.timeout)

    def _signing_key(self, namespace: str, target: Target) -> bytes:
        ref = (namespace, target.secret_name, target.secret_key)
        cached = self._keys.get(ref)
        if cached is not None and self.clock() - cached[1] < KEY_CACHE_SECONDS:
            return cached[0]
        raw = self.kube.read_secret_key(namespace, target.secret_name, target.secret_key)
        if raw is None:
            raise LookupError("no such Secret or key")
        key = signing.signing_key(raw)
        self._keys[ref] = (key, self.clock())
        return key

    # -- journal -------------------------------------------------------------------------------------------------
    def _persist(self, s: _Session) -> None:
        with s.write_lock:
            with self._cond:
                if s.gone:
                    s.unsaved = False
                    return
                text = jr.patch(s.journal)
            try:
                result = self.kube.patch_session(s.meta["namespace"], s.meta["name"], text)
            except Exception as err:  # the events are sent all the same; the next write carries them
                log.warning("cannot write the webhook journal of %s/%s (an operator restart now would derive "
                            "its latest events again): %s", s.meta["namespace"], s.meta["name"], err)
                with self._cond:
                    s.unsaved = False
                return
            with self._cond:
                s.unsaved = False
                if result is None:
                    s.gone = True

    def _forget_if_done(self, key: tuple[str, str], s: _Session) -> None:
        if (s.final or s.gone) and not s.journal.pending and not s.busy and s.held is None and \
                self._sessions.get(key) is s:
            del self._sessions[key]
            self._gauge()

    def _count(self, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.webhook_deliveries.labels(outcome).inc()

    def _gauge(self) -> None:
        if self.metrics is not None:
            self.metrics.webhook_pending.set(sum(len(s.journal.pending) for s in self._sessions.values()))


def _parse(text: str) -> datetime:
    return st.parse_time(text) or st.now_utc()
