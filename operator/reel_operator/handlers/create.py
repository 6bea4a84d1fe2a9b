"""A new session (or one found at operator start): take the room, create the recorder's identity and pod; and
the replacement pod of a lost recorder (``replace``, from the interruption timer)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from reel_api import FailureReason, Phase, SessionError, StopReason

from .. import endpoints, interruptions, lock, podspec, podstate, rbac
from .. import status as st
from ..names import LABEL_ROOM_KEY, BuildError, object_name, owned_by, room_key
from . import pods
from .common import Context, fail, invalid, parse, update_status

#: Phases in which a recorder pod has been running: at operator start such a session is not started again.
RUNNING_PHASES = frozenset({Phase.RECORDING, Phase.PAUSED, Phase.STOPPING, Phase.UPLOADING})

#: Attempts of the create handler (API errors, a stale pod of an earlier session) before giving up.
MAX_ATTEMPTS = 8


def start(ctx: Context, body: Mapping[str, Any], *, retry: int = 0, logger=None) -> None:
    status = body.get("status") or {}
    if body["metadata"].get("uid") in ctx.started and status.get("phase") in (None, Phase.PENDING):
        # Started by this process already, and this body predates it: kopf runs the handler again when the watch
        # lags behind its own patch by more than settings.persistence.consistency_timeout (main.py). Idempotent
        # anyway, but ~10 API calls at the moment the API server is slowest.
        return
    if st.is_terminal(status.get("phase")) or body["metadata"].get("deletionTimestamp"):
        return
    if status.get("interruption"):
        return  # a lost recorder is being replaced: the interruption timer does it (session_events)
    try:
        session = parse(body)
    except SessionError as err:
        invalid(ctx, body, err)
        return
    if status.get("phase") in RUNNING_PHASES:
        resume_running(ctx, body, stopping=session.spec.stop)
        return
    if session.spec.stop:
        update_status(ctx, body, {"phase": Phase.COMPLETED, "stopReason": StopReason.REQUESTED,
                                  "message": "spec.stop was set before the recording started: nothing recorded"})
        return
    if retry >= MAX_ATTEMPTS:
        fail(ctx, body, FailureReason.START_FAILED, f"could not create the recorder after {retry} attempts; see the "
                                       "operator's log and the session's events")
        return

    if not allowed_to_start(ctx, body, session):
        return

    # Label first: other sessions of the same room see us while we check (lock.py). (Not on kopf's finalizer patch
    # of the first event: kopf sends a merge patch and its finalizer's JSON patch apart, the second then conflicts.)
    key = room_key(session)
    if (body["metadata"].get("labels") or {}).get(LABEL_ROOM_KEY) != key:
        body = ctx.kube.patch_session(session.metadata.namespace, session.metadata.name,
                                      {"metadata": {"labels": {LABEL_ROOM_KEY: key}}})
        if body is None:
            return  # deleted meanwhile
    winner = lock.acquire(ctx.kube, session, body, namespaces=ctx.settings.namespaces, now=st.now_utc())
    if winner is not None:
        fail(ctx, body, FailureReason.ALREADY_RECORDING,
             f"room {session.spec.room.id} on {session.spec.room.server} (mode {session.spec.recording.mode}) is "
             f"already being recorded by {winner}: nothing was done. Stop that session first, or record another "
             "room", stop_reason=StopReason.ALREADY_RECORDING)
        return

    try:
        pod_body = podspec.build_pod(session, ctx.settings, restart=status.get("restarts") or 0)
    except BuildError as err:
        fail(ctx, body, FailureReason.INVALID_RECORDER_SETTINGS, str(err))
        lock.release(ctx.kube, session)
        return
    pod, created = create_recorder(ctx, session, body["metadata"], pod_body)
    if not owned_by(pod, body["metadata"]):
        # a pod of an earlier session with the same name is still terminating
        raise kopf.TemporaryError(f"pod {pod['metadata']['name']} belongs to an earlier session; waiting for it "
                                  "to go", delay=5)
    if logger and created:
        logger.info("created recorder pod %s", pod["metadata"]["name"])
    # From the body as given or as the label patch answered: no recorder writes before its pod runs; should anyone
    # have written meanwhile, the resourceVersion refuses the patch and update_status reads and computes again.
    update_status(ctx, body, {"phase": Phase.STARTING, "pod": pod["metadata"]["name"]}, fresh=False,
                  acted=podspec.pod_generation(pod))  # the recorder starts with that generation's spec
    ctx.started.add(body["metadata"].get("uid"))


def create_recorder(ctx: Context, session, meta: Mapping[str, Any],
                    pod_body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The recorder's ServiceAccount, Role and RoleBinding (rbac.py), then its pod -> (pod, created). Each is
    created, or adopted only when it is this session's (owner uid): those of an earlier session of the same name
    (deleted, its garbage collection under way) are never taken over, their collection would take the new
    recorder's identity with it; kopf.TemporaryError until they are gone (the create handler gives up after
    MAX_ATTEMPTS, StartFailed).

    Order: the pod needs its ServiceAccount to be admitted, a RoleBinding its Role (without RBAC ``bind`` the API
    server resolves the Role to check the binding grants nothing more than its creator holds: 404 before it
    exists). With ``ctx.io`` two round trips, not four: ServiceAccount and Role at once, then RoleBinding and pod at
    once (the recorder's first status report, a second or more later, retries should it come first)."""
    account, role, binding = rbac.build_identity(session, ctx.settings.recorder_sa_annotations)
    for obj, (existing, _) in zip((account, role), _create_all(ctx, (account, role)), strict=True):
        _check_owned(obj, existing, meta)
    (bound, _), (pod, created) = _create_all(ctx, (binding, pod_body))
    _check_owned(binding, bound, meta)
    return pod, created


def _create_all(ctx: Context, objects) -> list[tuple[dict[str, Any], bool]]:
    """kube.create of each, at once with ``ctx.io``; every one answered (or raised) when this returns."""
    if ctx.io is None:
        return [ctx.kube.create(obj) for obj in objects]
    return [future.result() for future in [ctx.io.submit(ctx.kube.create, obj) for obj in objects]]


def _check_owned(obj: Mapping[str, Any], existing: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
    if not owned_by(existing, meta):
        raise kopf.TemporaryError(f"{obj['kind']} {obj['metadata']['name']} belongs to an earlier session of the same "
                                  "name; waiting for its garbage collection", delay=3)


def allowed_to_start(ctx: Context, body: Mapping[str, Any], session) -> bool:
    """Where the session points (endpoints.py: denied addresses, names resolved here, the allow-lists) and
    whether it would need ambient cloud credentials: a session that may not fails before anything is created."""
    problems = endpoints.endpoint_problems(session.spec, endpoints.EndpointPolicy.from_settings(ctx.settings))
    if problems:
        fail(ctx, body, FailureReason.ENDPOINT_NOT_ALLOWED, "; ".join(problems))
        return False
    problems = endpoints.credential_problems(session.spec, ctx.settings.allow_ambient_credentials)
    if problems:
        fail(ctx, body, FailureReason.CREDENTIALS_REQUIRED, "; ".join(problems))
        return False
    return True


def resume_running(ctx: Context, body: Mapping[str, Any], *, stopping: bool) -> None:
    """Operator (re)start with a session whose recorder ran: never record twice. If the pod vanished while
    nobody watched, its recorder was lost: an interruption (a replacement continues the recording), or, when
    stopping, the end; otherwise its events carry on."""
    meta = body["metadata"]
    status = body.get("status") or {}
    name = object_name(meta["name"])
    pod = ctx.kube.get_pod(meta["namespace"], name)
    if pod is not None:
        return
    view = podstate.PodView(name=name, gone=True, running=True, restart=status.get("restarts") or 0)
    cause = interruptions.judge_interruption(view, phase=status.get("phase"), stopping=stopping)
    if cause is not None:
        pods.interrupted(ctx, body, None, view, cause)
        return
    verdict = podstate.judge_pod(view, namespace=meta["namespace"], now=st.now_utc(),
                           start_timeout=ctx.settings.start_timeout_seconds, stopping=stopping)
    if verdict is not None:
        update_status(ctx, body, {"phase": verdict.phase, "stopReason": verdict.stop_reason,
                                  "message": verdict.message}, reason=verdict.reason)


def replace(ctx: Context, body: Mapping[str, Any], *, logger=None) -> None:
    """Start the replacement of a lost recorder (status.interruption is set, the lost pod is gone, the backoff
    has passed): the same pod, restart number status.restarts, with REEL_RESUME when the lost recorder had
    reported its recording (else it starts afresh). The identity objects and the room lock stay the session's."""
    meta = body["metadata"]
    status = body.get("status") or {}
    try:
        session = parse(body)
    except SessionError as err:
        invalid(ctx, body, err)
        return
    restarts = status.get("restarts") or 0
    try:
        pod_body = podspec.build_pod(session, ctx.settings, restart=restarts,
                                     resume=interruptions.resume_request(status))
    except BuildError as err:
        fail(ctx, body, FailureReason.INVALID_RECORDER_SETTINGS, str(err))
        return
    # the identity is still there (owned by the session); created again if someone removed it
    pod, created = create_recorder(ctx, session, meta, pod_body)
    if not owned_by(pod, meta) or podstate.pod_view(pod).restart != restarts:
        return  # the lost pod (or an earlier session's) is still there: the next tick deletes it / waits
    if logger and created:
        logger.info("created replacement recorder pod %s (restart %d)", pod["metadata"]["name"], restarts)
    update_status(ctx, body, {"pod": pod["metadata"]["name"]}, acted=podspec.pod_generation(pod))
