"""Recorder pod events -> the session's status: failures to start, the recorder's exit, and cleanup.

The recorder reports its own progress; what only the pod can tell (image pull errors, a missing Secret, an
unschedulable pod, OOM kills, exits without a report) comes from here. A pod whose session has ended is
deleted: nothing retries.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reel_api import Phase, StopReason

from .. import status as st
from ..names import owner_session
from .common import Context, update_status


def remove_pod(ctx: Context, pod: Mapping[str, Any], view: st.PodView) -> None:
    """Delete a pod we no longer need: at once if its recorder is not running, else gracefully."""
    if view.gone or view.deleting:
        return
    grace = 0 if (view.terminated is not None or not view.running) else None
    ctx.kube.delete_pod(pod["metadata"]["namespace"], pod["metadata"]["name"], grace_seconds=grace,
                        uid=pod["metadata"].get("uid"))


def observe(ctx: Context, pod: Mapping[str, Any], *, gone: bool = False, session: Mapping[str, Any] | None = None,
            logger=None) -> None:
    namespace = pod["metadata"]["namespace"]
    owner = owner_session(pod)
    if owner is None:
        return
    if session is None:
        session = ctx.kube.get_session(namespace, owner[0])
    view = st.pod_view(pod, gone=gone)
    if session is None or session["metadata"].get("uid") != owner[1]:
        return  # the session is gone: garbage collection removes its pod
    status = session.get("status") or {}
    phase = status.get("phase")
    meta = session["metadata"]
    stopping = bool((session.get("spec") or {}).get("stop"))
    deleting = bool(meta.get("deletionTimestamp"))

    events = ()
    if not view.running and not gone and view.waiting_reason in (None, st.CONTAINER_CREATING):
        events = ctx.kube.pod_events(namespace, view.name)  # FailedMount (a missing Secret) shows only there
    verdict = st.judge_pod(view, namespace=namespace, now=st.now_utc(),
                           start_timeout=ctx.settings.start_timeout_seconds, stopping=stopping, deleting=deleting,
                           events=events, grace_seconds=ctx.settings.termination_grace_seconds)

    if st.is_terminal(phase):
        # Already final (the recorder reported it): only refine a failure with the recorder's detailed reason.
        if verdict and verdict.phase == phase == Phase.FAILED and verdict.reason and \
                st.failure_reason(status) in (StopReason.ERROR, Phase.FAILED):
            update_status(ctx, session, {"phase": phase}, reason=verdict.reason, fresh=False)
        remove_pod(ctx, pod, view)
        return
    if verdict is None:
        if view.running and status.get("pod") != view.name:
            update_status(ctx, session, {"pod": view.name}, fresh=False)
        return
    changes: dict[str, Any] = {"phase": verdict.phase, **verdict.extra}
    if verdict.stop_reason:
        changes["stopReason"] = verdict.stop_reason
    if verdict.message:
        changes["message"] = verdict.message
    if verdict.terminal:
        changes.setdefault("stoppedAt", status.get("stoppedAt") or st.rfc3339(st.now_utc()))
        if status.get("activeParticipants"):
            changes["activeParticipants"] = 0
    if logger:
        logger.info("recorder pod %s: %s (%s)", view.name, verdict.phase, verdict.reason)
    update_status(ctx, session, changes, reason=verdict.reason, fresh=False)
    if verdict.terminal:
        remove_pod(ctx, pod, view)
