"""A new session (or one found at operator start): take the room, create the recorder's identity and pod; and
the replacement pod of a lost recorder (``replace``, from the interruption timer)."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import CancelledError, Future
from typing import Any

import kopf

from reel_api import FailureReason, Phase, SessionError, StopReason

from .. import accounts, endpoints, interruptions, lock, podspec, podstate, rbac
from .. import status as st
from ..names import LABEL_ROOM_KEY, BuildError, object_name, owned_by, room_key
from . import identity, pods
from .common import Context, fail, invalid, parse, update_status

#: Phases in which a recorder pod has been running: at operator start such a session is not started again.
RUNNING_PHASES = frozenset({Phase.RECORDING, Phase.PAUSED, Phase.STOPPING, Phase.UPLOADING})

log = logging.getLogger("reel.operator")

#: Attempts of the create handler (API errors, a stale pod of an earlier session) before giving up.
MAX_ATTEMPTS = 8


def early(body: Mapping[str, Any], finalizer: str) -> bool:
    """A session's first event, before kopf's finalizer is on it: new (no phase), not being deleted. Pure."""
    meta = body["metadata"]
    return not (body.get("status") or {}).get("phase") and not meta.get("deletionTimestamp") \
        and finalizer not in (meta.get("finalizers") or ())


def register_early(ctx: Context, uid: str | None) -> Future | None:
    """On the event loop, before ``start_early`` is handed to a thread: the session counts as starting from now
    on (``ctx.starting``), so that kopf's create handler waits for it even while the start still waits for a free
    thread. -> the future ``start_early`` completes; None when the session is started or starting already."""
    with ctx.starting_lock:
        if uid in ctx.started or uid in ctx.starting:
            return None
        done = ctx.starting[uid] = Future()
    return done


def start_early(ctx: Context, body: Mapping[str, Any], *, rooms: Mapping[str, Any] | None = None, logger=None,
                registered: Future | None = None) -> None:
    """``start`` on a new session's first event (main.py's ``on_session_event``), while kopf adds its finalizer:
    the pod does not wait for that patch to come back through the watch. kopf's create handler, on the event with
    the finalizer, waits for this run to end (``early_run``, on the event loop; the rest after the pod included,
    ``_then``) and then does nothing more, unless it raised: then it runs ``start`` itself, with kopf's retries.
    ``registered``: what ``register_early`` returned for it (else this run registers itself). Without a finalizer
    yet, a session deleted meanwhile goes at once; what was created for it is owned by it and goes with it
    (garbage collection)."""
    uid = body["metadata"].get("uid")
    done = registered if registered is not None else register_early(ctx, uid)
    if done is None:
        return

    def end(err: BaseException | None) -> None:
        if err is None:
            ctx.started.add(uid)
        else:  # the create handler runs it again, with kopf's retries and their log
            log.info("%s/%s: left to the create handler (%s)", body["metadata"].get("namespace"),
                     body["metadata"].get("name"), err)
        _started_or_not(ctx, uid, done)

    try:
        rest = _start(ctx, body, rooms=rooms, logger=logger)
    except Exception as err:
        end(err)
        return
    with contextlib.suppress(Exception):  # end() has seen it
        _then(ctx, rest, end)


def _then(ctx: Context, rest: Callable[[], None] | None, end: Callable[[BaseException | None], None]) -> Future | None:
    """The rest of a start once its pod is created (``_start``'s answer: the account's binding and claim, the
    Starting write) in ``ctx.finish``, a pool of its own, so that this handler thread is free for the next
    session's pod while the rest waits for the API server; in this thread when the context has no such pool.
    ``end(error or None)`` once it has run, whatever its outcome. -> the pool's future (it raises what the rest
    raised); None when it ran here (its error raised here)."""
    if rest is None or ctx.finish is None:
        try:
            if rest is not None:
                rest()
        except BaseException as err:
            end(err)
            raise
        end(None)
        return None
    future = ctx.finish.submit(contextvars.copy_context().run, rest)  # kopf.event needs the handler's context
    future.add_done_callback(lambda f: end(CancelledError() if f.cancelled() else f.exception()))
    return future


def _started_or_not(ctx: Context, uid: str | None, done: Future) -> None:
    """The end of a registered start (``register_early``), whatever its outcome: no longer starting; whoever waits
    for it goes on (``ctx.started`` says whether it started)."""
    with ctx.starting_lock:
        ctx.starting.pop(uid, None)
    done.set_result(None)


def early_run(ctx: Context, body: Mapping[str, Any]) -> Future | None:
    """The early start under way for this session (``register_early``), if any."""
    with ctx.starting_lock:
        return ctx.starting.get(body["metadata"].get("uid"))


def started_here(ctx: Context, body: Mapping[str, Any]) -> bool:
    """This process started the session already (Starting is its last write) and ``body`` predates that or shows
    it: kopf runs the create handler on the event after its finalizer patch (start_early ran on the first), and
    again when the watch lags behind its own patch by more than settings.persistence.consistency_timeout
    (main.py). Starting again would be idempotent anyway, but ~10 API calls at the moment the API server is
    slowest. Pure but for ``ctx.started``."""
    return body["metadata"].get("uid") in ctx.started and \
        (body.get("status") or {}).get("phase") in (None, Phase.PENDING, Phase.STARTING)


def start(ctx: Context, body: Mapping[str, Any], *, retry: int = 0, rooms: Mapping[str, Any] | None = None,
          labels: dict[str, str] | None = None, logger=None, registered: Future | None = None) -> Future | None:
    """``rooms``: main.py's index of the sessions by room key (``lock.Claim``s); None: the room check lists the
    labelled sessions instead (``lock.acquire``). ``labels`` (kopf's create handler, with the index): the room-key
    label is put in it instead of a patch of its own, and kopf sends it with its own patch after the handler (the
    diff-base): with the finalizer put on at admission (the chart's MutatingAdmissionPolicy) the session is then
    written twice as it starts (Starting, kopf's patch) instead of four times. ``body`` is then the event's, at a
    resourceVersion nobody has written past (kopf's finalizer patch, if any, made this event), so the Starting
    write needs no label answer's. ``registered``: what ``register_early`` returned for this run (kopf's create
    handler registers it on the event loop, as the early start does): until the whole start has run the session
    counts as starting here, so that the events of its first pod, which may run before the Starting write shows,
    are not read and written again (pods.quiet).

    This thread runs the start up to the recorder pod; the rest runs in ``ctx.finish`` when the context has that
    pool (``_then``) -> its future, which the caller awaits (main.py's create handler: kopf's retries see its
    error); None when all of it ran here (its errors raised here)."""
    uid = body["metadata"].get("uid")
    if registered is None:
        running = early_run(ctx, body)
        if running is not None:
            running.result()  # start_early runs for this session: its outcome decides (ctx.started) what is left

    def end(_err: BaseException | None) -> None:
        if registered is not None:
            _started_or_not(ctx, uid, registered)

    try:
        rest = _start(ctx, body, retry=retry, rooms=rooms, labels=labels, logger=logger)
    except BaseException as err:
        end(err)
        raise
    return _then(ctx, rest, end)


def _start(ctx: Context, body: Mapping[str, Any], *, retry: int = 0, rooms: Mapping[str, Any] | None = None,
           labels: dict[str, str] | None = None, logger=None) -> Callable[[], None] | None:
    """A start up to its recorder pod -> the rest (``_after_pod``), or None when nothing is left to do."""
    status = body.get("status") or {}
    if started_here(ctx, body):
        return None
    if st.is_terminal(status.get("phase")) or body["metadata"].get("deletionTimestamp"):
        return None
    if status.get("interruption"):
        return None  # a lost recorder is being replaced: the interruption timer does it (session_events)
    try:
        session = parse(body)
    except SessionError as err:
        invalid(ctx, body, err)
        return None
    if status.get("phase") in RUNNING_PHASES:
        resume_running(ctx, body, stopping=session.spec.stop)
        return None
    if session.spec.stop:
        update_status(ctx, body, {"phase": Phase.COMPLETED, "stopReason": StopReason.REQUESTED,
                                  "message": "spec.stop was set before the recording started: nothing recorded"})
        return None
    if retry >= MAX_ATTEMPTS:
        fail(ctx, body, FailureReason.START_FAILED, f"could not create the recorder after {retry} attempts; see the "
                                       "operator's log and the session's events")
        return None

    if not allowed_to_start(ctx, body, session):
        return None
    try:  # pure: a session that cannot have a pod fails before anything is created or taken
        pod_body = podspec.build_pod(session, ctx.settings, restart=status.get("restarts") or 0)
    except BuildError as err:
        fail(ctx, body, FailureReason.INVALID_RECORDER_SETTINGS, str(err))
        return None

    key = room_key(session)
    if rooms is None:
        body, winner, made = _start_listed(ctx, session, body, key, pod_body)
        rest = None if made is None or body is None else functools.partial(_as_made, body, made)
    else:
        # list(): one step under the GIL, while kopf's event loop may change the index
        winner, rest = _start_indexed(ctx, session, body, key, pod_body, list(rooms.get(key, ())),
                                      labels=labels, retry=retry)
    if winner is not None:
        fail(ctx, body, FailureReason.ALREADY_RECORDING,
             f"room {session.spec.room.id} on {session.spec.room.server} (mode {session.spec.recording.mode}) is "
             f"already being recorded by {winner}: nothing was done. Stop that session first, or record another "
             "room", stop_reason=StopReason.ALREADY_RECORDING)
        return None
    if rest is None:
        return None  # deleted meanwhile
    return functools.partial(_after_pod, ctx, rest, logger)


def _after_pod(ctx: Context, rest: Callable[[], tuple], logger) -> None:
    """The start after its pod was created: ``rest()`` (what is left of the identity, the label) -> (the session
    as labelled, (pod, created)); then the Starting write."""
    body, made = rest()
    if made is None or body is None:
        return  # deleted meanwhile
    pod, created = made
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


def _labelled(body: Mapping[str, Any], key: str) -> bool:
    return (body["metadata"].get("labels") or {}).get(LABEL_ROOM_KEY) == key


def _label(ctx: Context, session, body: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    """The session labelled with its room key: as given when it is, else as the patch answered (None: gone)."""
    if _labelled(body, key):
        return body
    return ctx.kube.patch_session(session.metadata.namespace, session.metadata.name,
                                  {"metadata": {"labels": {LABEL_ROOM_KEY: key}}})


def _start_listed(ctx: Context, session, body, key, pod_body):
    """Without the index: label first (other sessions of the same room see us while we check: lock.py), list the
    room's labelled sessions, take the Lease, then the identity and the pod (create_recorder). (Not on kopf's
    finalizer patch of the first event: kopf sends a merge patch and its finalizer's JSON patch apart, the second
    then conflicts.) -> (body, winner, (pod, created))."""
    body = _label(ctx, session, body, key)
    if body is None:
        return None, None, None
    winner = lock.acquire(ctx.kube, session, body, namespaces=ctx.settings.namespaces, now=st.now_utc())
    if winner is not None:
        return body, winner, None
    return body, None, identity.create_recorder(ctx, session, body["metadata"], pod_body)


def _start_indexed(ctx: Context, session, body, key, pod_body, claims, *, labels: dict[str, str] | None = None,
                   retry: int = 0):
    """With the index: the room check reads nothing unless the index shows an earlier active session of the room
    (lock.earlier_claim); then two round trips: the Lease (lock.take, this thread) beside the first creates
    (``ctx.io``), then the rest with the room-key label (its answer's resourceVersion is the one the Starting
    write carries). With an account made ahead (``ctx.accounts``, accounts.py) the pod is in the first round
    (beside the Role) and the second, which binds and claims the account, is left to the caller (``rest``: the
    pod does not wait for it); without one the session's own ServiceAccount and Role come first, the RoleBinding
    and the pod second, both here. Should the Lease show that another session took the room in between (a race
    the index did not show yet), what the first round created is deleted again (the pod at once, grace 0) before
    the session fails: the loser keeps nothing; so is the pod when the Role found is an earlier session's (its
    garbage collection under way): the retries (``retry``) then take no account made ahead, their pod waits for
    the identity as before. With ``labels`` (``start``) the label goes into it, not into a patch.
    -> (winner, rest): ``rest()`` -> (the session as labelled, (pod, created)); rest None when the room is lost."""
    winner = lock.earlier_claim(ctx.kube, body, claims)
    if winner is not None:
        return winner, None
    meta, namespace = body["metadata"], session.metadata.namespace
    account = ctx.accounts.take(namespace) if ctx.accounts is not None and not retry else None
    own, role, binding = rbac.build_identity(session, ctx.settings.recorder_sa_annotations)
    first = (role, podspec.as_account(pod_body, account)) if account else (own, role)
    try:
        winner, made = identity.beside(ctx, lambda: lock.take(ctx.kube, session, now=st.now_utc()),
                                       identity.creates(ctx, first))
    except Exception:
        if account:  # the pod may have been refused its account (deleted by someone?): read the pool again
            ctx.accounts.forget(namespace)
        raise
    if winner is not None:
        identity.undo(ctx, first, made, account)
        return winner, None
    for obj, (existing, _) in zip(first, made, strict=True):
        if obj["kind"] != "Pod" and not owned_by(existing, meta):
            if account:  # no pod while an earlier session's identity is being collected
                identity.undo(ctx, first, made, account)
            identity.check_owned(obj, existing, meta)  # raises: kopf retries, without an account made ahead
    if labels is not None and not _labelled(body, key):
        labels[LABEL_ROOM_KEY] = key
    if not account:
        labelled, results = _second(ctx, session, body, key, identity.creates(ctx, (binding, pod_body)), labels)
        identity.check_owned(binding, results[0][0], meta)
        identity.rebind(ctx, session, meta, results[1][0], results[0][0])
        return None, functools.partial(_as_made, labelled, results[1])
    pod = made[1]
    if not owned_by(pod[0], meta):  # an earlier session's pod, still terminating: the rest raises, kopf retries
        ctx.accounts.give_back(namespace, account)
        return None, functools.partial(_as_made, body, pod)
    used = podspec.pod_account(pod[0])  # an earlier attempt's pod keeps the account it was created with
    if used != account:
        ctx.accounts.give_back(namespace, account)
    return None, functools.partial(_bind, ctx, session, body, key, pod, used, labels)


def _bind(ctx: Context, session, body, key, pod, account: str, labels) -> tuple:
    """The second round of a start whose pod runs as an account made ahead: its RoleBinding and claim (and the
    room-key label, unless ``labels`` takes it) -> (the session as labelled, (pod, created))."""
    labelled, results = _second(ctx, session, body, key, identity.bind_calls(ctx, session, account), labels)
    identity.check_bound(body["metadata"], pod[0], account, results)
    return labelled, pod


def _second(ctx: Context, session, body, key, calls, labels) -> tuple:
    """``calls`` at once, beside the label patch when ``labels`` is None -> (the session as labelled, results)."""
    if labels is None:
        return identity.beside(ctx, lambda: _label(ctx, session, body, key), calls)
    return body, identity.at_once(ctx, calls)


def _as_made(body, made) -> tuple:
    return body, made


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
    # the identity is still there (owned by the session); created again if someone removed it. Its RoleBinding
    # names the account the lost pod ran as (the session's own, or one it claimed: accounts.py)
    binding = ctx.kube.get_role_binding(meta["namespace"], object_name(meta["name"]))
    account = rbac.bound_account(binding) if owned_by(binding, meta) else None
    pod, created = identity.create_recorder(ctx, session, meta, pod_body,
                                            account=account if account and accounts.pooled(account) else None)
    if not owned_by(pod, meta) or podstate.pod_view(pod).restart != restarts:
        return  # the lost pod (or an earlier session's) is still there: the next tick deletes it / waits
    if logger and created:
        logger.info("created replacement recorder pod %s (restart %d)", pod["metadata"]["name"], restarts)
    update_status(ctx, body, {"pod": pod["metadata"]["name"]}, acted=podspec.pod_generation(pod))
