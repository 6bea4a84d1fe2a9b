"""What the handlers share: the context (API client, settings, metrics) and the one way to change a session's status."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Any

import kopf

from reel_api import API_VERSION, KIND, FailureReason, Phase, RecordingSession, SessionError, StopReason, load_session

from .. import status as st
from ..kube import Conflict, Kube
from ..metrics import Metrics
from ..room_faults import room_event, skipped_event
from ..settings import Settings

log = logging.getLogger("reel.operator")
MAX_CONFLICTS = 5


@dataclass
class Context:
    kube: Kube
    settings: Settings
    metrics: Metrics = field(default_factory=Metrics)
    webhooks: Any = None  # webhooks.delivery.Delivery once started (main.configure); None: no webhooks sent
    started: set[str] = field(default_factory=set)  # uids of sessions this process started (create.start)
    stopped: set[str] = field(default_factory=set)  # uids of sessions whose recorder this process told to stop
    #: uids of sessions whose recorder pod this process deleted for a stop (as soon as the delete is answered,
    #: before the Stopping write): the pod event of that deletion changes nothing (pods.quiet)
    stop_sent: set[str] = field(default_factory=set)
    #: uids of sessions whose early start (create.start_early) is under way -> done when it has returned; entered
    #: on the event loop before the start is handed to a thread (create.register_early)
    starting: dict[str, Future] = field(default_factory=dict)
    starting_lock: threading.Lock = field(default_factory=threading.Lock)
    #: Runs independent API calls of one handler at once (create.create_recorder); None: one after the other.
    io: Executor | None = None
    #: Runs the rest of a start once its recorder pod is created (create._then: the account's binding, the Starting
    #: write), so that the handler thread is free for the next session's pod; None: in the handler's thread.
    finish: Executor | None = None
    #: Recorder ServiceAccounts made ahead (accounts.py), taken by create.start; None: each start makes its own.
    accounts: Any = None


def ctx_of(memo: Any) -> Context:
    return memo.reel


def parse(body: Mapping[str, Any]) -> RecordingSession:
    """The session as our models see it (the apiserver already validated it; raises SessionError if not)."""
    return load_session(dict(body))


def session_ref(body: Mapping[str, Any]) -> dict[str, Any]:
    """What kopf.event needs to post an Event on the session."""
    meta = body["metadata"]
    return {"apiVersion": body.get("apiVersion", API_VERSION), "kind": body.get("kind", KIND),
            "metadata": {"name": meta["name"], "namespace": meta.get("namespace"), "uid": meta.get("uid")}}


def post_event(body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
    try:
        kopf.event(session_ref(body), type=type_, reason=reason, message=message[:1024])
    except Exception as err:  # events are best effort
        log.warning("cannot post event %s on %s: %s", reason, body["metadata"].get("name"), err)


Changes = Mapping[str, Any] | Callable[[Mapping[str, Any]], Mapping[str, Any]]


def update_status(ctx: Context, body: Mapping[str, Any] | None, changes: Changes, *,
                  namespace: str | None = None, name: str | None = None, reason: str | None = None,
                  fresh: bool = True, acted: int | None = None) -> dict[str, Any] | None:
    """Apply ``changes`` to the session's status (phases only forward), recompute the conditions, post an
    Event when the phase changed. ``fresh``: read the session first (the body may be stale). ``changes`` may be
    a function of the current status (called again after a conflict) when they depend on it. ``acted``: a
    metadata.generation this handler acted on (status.observedGeneration may move to it; health.py).

    The patch carries the resourceVersion it was computed from: when someone else (another handler, the
    recorder) wrote in between, the apiserver refuses it and we compute again from what is there now.
    Returns the status patch sent (empty if nothing changed), None if the session is gone."""
    namespace = namespace or body["metadata"]["namespace"]
    name = name or body["metadata"]["name"]
    for attempt in range(MAX_CONFLICTS):
        if fresh or body is None or attempt:
            body = ctx.kube.get_session(namespace, name)
            if body is None:
                return None
        old = dict(body.get("status") or {})
        wanted = changes(old) if callable(changes) else changes
        patch = st.status_patch(old, wanted, generation=body["metadata"].get("generation"), now=st.now_utc(),
                                reason=reason, acted=acted)
        if not patch:
            return patch
        try:
            if ctx.kube.patch_session_status(namespace, name, patch,
                                             resource_version=body["metadata"].get("resourceVersion")) is None:
                return None
        except Conflict:
            continue
        for event in (st.transition(old, patch), st.disk_full_event(old, patch), skipped_event(old, patch),
                      room_event(old, patch)):
            if event:
                post_event(body, *event)
        return patch
    raise kopf.TemporaryError(f"status of {namespace}/{name} keeps changing; will retry", delay=1)


def fail(ctx: Context, body: Mapping[str, Any], reason: str, message: str,
         stop_reason: StopReason = StopReason.ERROR) -> dict[str, Any] | None:
    return update_status(ctx, body, {"phase": Phase.FAILED, "stopReason": stop_reason, "message": message},
                         reason=reason)


def invalid(ctx: Context, body: Mapping[str, Any], err: SessionError) -> None:
    fail(ctx, body, FailureReason.INVALID_SESSION, str(err))
