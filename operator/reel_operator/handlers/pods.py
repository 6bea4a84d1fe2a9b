"""Recorder pod events -> the session's status: failures to start, the recorder's exit, losses, and cleanup.

The recorder reports its own progress; what only the pod can tell (image pull errors, a missing Secret, an
unschedulable pod, exits without a report) comes from here. A recorder lost while its session was not
stopped (pod deleted or evicted, OOM kill, crash, failed liveness probe, node gone:
``interruptions.judge_interruption``; a liveness kill shows only in the pod's Events, read when the end could be
one) is an interruption: status.restarts + 1 and status.interruption are written, a Warning Event is posted and
the lost pod removed; the timer of ``session_events.check_interruption`` then starts the replacement. After
spec.recording.maxRestarts replacements the next loss fails the session (TooManyRestarts). A pod whose session
has ended is deleted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reel_api import ConditionReason, FailureReason, Phase, StopReason

from .. import interruptions, podstate
from .. import status as st
from ..names import object_name, owned_by, owner_session
from .common import Context, update_status


def remove_pod(ctx: Context, pod: Mapping[str, Any], view: podstate.PodView) -> None:
    """Delete a pod we no longer need: at once if its recorder is not running, else gracefully."""
    if view.gone or view.deleting:
        return
    grace = 0 if (view.terminated is not None or not view.running) else None
    ctx.kube.delete_pod(pod["metadata"]["namespace"], pod["metadata"]["name"], grace_seconds=grace,
                        uid=pod["metadata"].get("uid"))


def force_remove(ctx: Context, pod: Mapping[str, Any] | None, view: podstate.PodView) -> None:
    """Delete a lost recorder's pod at once (also one already terminating, e.g. on a lost node): its recorder
    has exited or cannot be reached, and its replacement needs the name."""
    if pod is None or view.gone:
        return
    ctx.kube.delete_pod(pod["metadata"]["namespace"], pod["metadata"]["name"], grace_seconds=0,
                        uid=pod["metadata"].get("uid"))


def current_pod(ctx: Context, body: Mapping[str, Any]) -> tuple[Mapping[str, Any] | None, podstate.PodView | None]:
    """The session's recorder pod and its view, or (None, None): not there, another session's, or a lost
    recorder's (an earlier restart number than status.restarts), which is force-deleted on the way."""
    meta = body["metadata"]
    pod = ctx.kube.get_pod(meta["namespace"], object_name(meta["name"]))
    if not owned_by(pod, meta):
        return None, None
    view = podstate.pod_view(pod)
    if podstate.of_lost_recorder(view, body.get("status") or {}):
        force_remove(ctx, pod, view)  # the lost recorder's pod: not the current one
        return None, None
    return pod, view


def quiet(pod: Mapping[str, Any], *, gone: bool = False, hint: podstate.SessionHint | None = None,
          ctx: Context | None = None) -> bool:
    """``observe`` would do nothing with this event, without reading anything: not a session's pod, or one that
    changes nothing (``podstate.uneventful``; with ``ctx``, also what this process is doing: a start under way or
    done, a stop it sent). Pure but for reading ``ctx``: main.py answers such events on the event loop."""
    owner = owner_session(pod)
    if owner is None:
        return True
    uid = owner[1]
    return podstate.uneventful(podstate.pod_view(pod, gone=gone), hint, uid,
                               started_here=ctx is not None and (uid in ctx.started or uid in ctx.starting),
                               stopped_here=ctx is not None and uid in ctx.stop_sent)


def observe(ctx: Context, pod: Mapping[str, Any], *, gone: bool = False, session: Mapping[str, Any] | None = None,
            hint: podstate.SessionHint | None = None, logger=None) -> None:
    """A recorder pod event. ``session``: the session as just read (else it is read here, unless ``hint``, the
    session as last seen, shows that the event changes nothing: ``podstate.uneventful``)."""
    namespace = pod["metadata"]["namespace"]
    owner = owner_session(pod)
    if owner is None:
        return
    view = podstate.pod_view(pod, gone=gone)
    if session is None and podstate.uneventful(view, hint, owner[1]):
        return
    if session is None:
        session = ctx.kube.get_session(namespace, owner[0])
    if session is None or session["metadata"].get("uid") != owner[1]:
        return  # the session is gone: garbage collection removes its pod
    status = session.get("status") or {}
    phase = status.get("phase")
    meta = session["metadata"]
    stopping = bool((session.get("spec") or {}).get("stop"))
    deleting = bool(meta.get("deletionTimestamp"))

    if podstate.of_lost_recorder(view, status):
        force_remove(ctx, pod, view)  # a lost recorder's pod, already replaced (or being replaced)
        return
    if view.gone and phase in (None, Phase.PENDING) and not (stopping or deleting):
        return  # before Starting: the start removed the pod it made (the room lost, an earlier identity); it decides
    if st.is_terminal(phase):
        verdict = judge(ctx, view, namespace, stopping=stopping, deleting=deleting)
        # Already final (the recorder reported it): only refine a failure with the recorder's detailed reason.
        if verdict and verdict.phase == phase == Phase.FAILED and verdict.reason and \
                st.failure_reason(status) in (StopReason.ERROR, Phase.FAILED):
            update_status(ctx, session, {"phase": phase}, reason=verdict.reason, fresh=False)
        remove_pod(ctx, pod, view)
        return
    failures = 0
    if not (stopping or deleting) and interruptions.may_be_unresponsive(view):  # a liveness kill shows in Events
        failures = interruptions.liveness_failures(ctx.kube.pod_events(namespace, view.name),
                                                   pod["metadata"].get("uid"))
    cause = interruptions.judge_interruption(view, phase=phase, stopping=stopping, deleting=deleting,
                                             liveness_failures=failures)
    if cause is not None:
        interrupted(ctx, session, pod, view, cause, logger=logger)
        return
    verdict = judge(ctx, view, namespace, stopping=stopping, deleting=deleting)
    if verdict is None:
        if view.running and status.get("pod") != view.name:
            update_status(ctx, session, {"pod": view.name}, fresh=False)
        return
    changes: dict[str, Any] = {"phase": verdict.phase, **verdict.extra}
    if verdict.stop_reason:
        changes["stopReason"] = verdict.stop_reason
    if verdict.message:
        changes["message"] = verdict.message
    if verdict.reason == ConditionReason.STOPPED_BEFORE_START and interruptions.stopped_while_interrupted(status):
        changes["message"] = interruptions.stopped_while_interrupted(status)  # a replacement stopped before it started
    if verdict.terminal:
        changes.setdefault("stoppedAt", status.get("stoppedAt") or st.rfc3339(st.now_utc()))
        if status.get("activeParticipants"):
            changes["activeParticipants"] = 0
    if logger:
        logger.info("recorder pod %s: %s (%s)", view.name, verdict.phase, verdict.reason)
    update_status(ctx, session, changes, reason=verdict.reason, fresh=False)
    if verdict.terminal:
        remove_pod(ctx, pod, view)


def judge(ctx: Context, view: podstate.PodView, namespace: str, *, stopping: bool,
          deleting: bool) -> podstate.Verdict | None:
    events = ()
    if not view.running and not view.gone and view.waiting_reason in (None, st.CONTAINER_CREATING):
        events = ctx.kube.pod_events(namespace, view.name)  # FailedMount (a missing Secret) shows only there
    return podstate.judge_pod(view, namespace=namespace, now=st.now_utc(),
                              start_timeout=ctx.settings.start_timeout_seconds, stopping=stopping, deleting=deleting,
                              events=events, grace_seconds=ctx.settings.termination_grace_seconds)


def interrupted(ctx: Context, session: Mapping[str, Any], pod: Mapping[str, Any] | None, view: podstate.PodView,
                cause: interruptions.Interruption, *, logger=None) -> None:
    """The recorder of a session that goes on was lost: count a restart and mark the gap (the timer starts the
    replacement after the backoff), or, with spec.recording.maxRestarts used up, fail the session. Either way
    the lost pod goes at once."""
    limit = interruptions.max_restarts(session.get("spec"))
    now = st.now_utc()

    def changes(status: Mapping[str, Any]) -> dict[str, Any]:
        restarts = status.get("restarts") or 0
        if restarts > view.restart or st.is_terminal(status.get("phase")):
            return {}  # handled already (another event of the same loss), or over
        out: dict[str, Any] = dict(cause.extra)
        if status.get("activeParticipants"):
            out["activeParticipants"] = 0  # nobody is being recorded during the gap
        if restarts >= limit:
            return {**out, "phase": Phase.FAILED, "stopReason": StopReason.ERROR,
                    "message": interruptions.too_many_restarts_message(cause, restarts=restarts, limit=limit),
                    "stoppedAt": status.get("stoppedAt") or st.rfc3339(now)}
        return {**out, "restarts": restarts + 1,
                "interruption": interruptions.interruption_record(cause, restarts=restarts + 1, limit=limit, now=now)}

    # the reason applies only to the Failed of TooManyRestarts; an interruption posts the Warning Event
    # Interrupted (st.transition)
    patch = update_status(ctx, session, changes, reason=FailureReason.TOO_MANY_RESTARTS, fresh=False)
    if logger and patch:
        logger.warning("recorder pod %s lost (%s): %s", view.name, cause.reason,
                       f"replacement {patch['restarts']} of {limit}" if "restarts" in patch else patch.get("phase"))
    force_remove(ctx, pod, view)
