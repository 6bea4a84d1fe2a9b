"""Every session event (the recorder's status reports included) -> conditions, observedGeneration and an Event
per phase change; the end of an interruption once the replacement recorder reports; at the end the pod is
removed and the room released. Plus the start-timeout check while the session is Pending/Starting, and the
interruption timer that starts the replacement of a lost recorder."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from reel_api import SessionError

from .. import interruptions, lock, podstate
from .. import status as st
from ..names import object_name, owned_by
from . import create, pods
from .common import Context, parse, update_status


def _interruption_over(old: Mapping[str, Any]) -> Mapping[str, Any]:
    return {"interruption": None} if interruptions.interruption_over(old) else {}


def quiet(body: Mapping[str, Any]) -> bool:
    """``on_session_change`` would do nothing with this event: no phase yet (the create handler has not run), or
    not final and the status already as it computes it (no patch). Pure: main.py answers such events on the event
    loop, without a thread."""
    status = body.get("status") or {}
    phase = status.get("phase")
    if phase is None:
        return True
    if st.is_terminal(phase):
        return False
    return not st.status_patch(status, _interruption_over(status), generation=body["metadata"].get("generation"),
                               now=st.now_utc(), reason=None, acted=None)


def on_session_change(ctx: Context, body: Mapping[str, Any], *, pod_names: set[str] | None = None,
                      holds_lock: bool = True, lock_version: str | None = None, logger=None) -> None:
    """``pod_names``: recorder pods that exist in the namespace, ``holds_lock``: whether a room lock names this
    session, ``lock_version``: that Lease's resourceVersion (all from kopf indexes; None/True = unknown, ask the
    API)."""
    meta = body["metadata"]
    status = body.get("status") or {}
    phase = status.get("phase")
    if phase is None:
        return  # the create handler has not run yet
    # The replacement recorder reports: the gap is over (a Normal Event Resumed, st.transition).
    update_status(ctx, body, _interruption_over, fresh=False)
    if not st.is_terminal(phase):
        return
    # Final: no recorder pod may stay, the room is free again.
    pod_name = object_name(meta["name"])
    if pod_names is None or pod_name in pod_names:
        pod = ctx.kube.get_pod(meta["namespace"], pod_name)
        if owned_by(pod, meta):
            pods.remove_pod(ctx, pod, podstate.pod_view(pod))
    if holds_lock:
        with contextlib.suppress(SessionError):
            lock.release(ctx.kube, parse(body), resource_version=lock_version)


def start_settled(body: Mapping[str, Any], *, pod_running: bool) -> bool:
    """The start timer has nothing to look at: the session's current pod runs (``pod_running``, from the pod
    index) and the session names it; its recorder's report or a pod event moves it on. Pure: main.py answers the
    timer with it on the event loop, without a thread or an API call."""
    return pod_running and (body.get("status") or {}).get("pod") == object_name(body["metadata"]["name"])


def check_start(ctx: Context, body: Mapping[str, Any], *, logger=None, pod_running: bool = False) -> None:
    """Timer while Pending/Starting: a pod that cannot start produces no more pod events by itself.
    ``pod_running``: the session's current pod runs (main.py's pod index): nothing to look for until its recorder
    reports or the pod changes (a pod event), once the session names the pod."""
    meta = body["metadata"]
    if start_settled(body, pod_running=pod_running):
        return
    pod = ctx.kube.get_pod(meta["namespace"], object_name(meta["name"]))
    if pod is not None:
        pods.observe(ctx, pod, session=body, logger=logger)


def silent(body: Mapping[str, Any]) -> interruptions.Interruption | None:
    """The recorder has been silent for spec.recording.recorderSilenceSeconds (and the session is not being
    stopped or deleted): the cause of its interruption, else None. Pure: main.py's recording timer asks it on
    the event loop and takes a handler thread only for a silent recorder."""
    if (body.get("spec") or {}).get("stop") or body["metadata"].get("deletionTimestamp"):
        return None
    return interruptions.silence(body.get("status") or {}, body.get("spec"), st.now_utc())


def check_silence(ctx: Context, body: Mapping[str, Any], *, logger=None) -> None:
    """Timer while recording: a recorder silent for spec.recording.recorderSilenceSeconds is lost (its pod is
    removed, a replacement continues the recording), like one whose pod ended."""
    meta = body["metadata"]
    cause = silent(body)
    if cause is None:
        return
    pod = ctx.kube.get_pod(meta["namespace"], object_name(meta["name"]))
    if pod is not None and not owned_by(pod, meta):
        return
    view = podstate.pod_view(pod) if pod is not None else podstate.PodView(
        name=object_name(meta["name"]), gone=True, restart=(body.get("status") or {}).get("restarts") or 0)
    pods.interrupted(ctx, body, pod, view, cause, logger=logger)


def check_interruption(ctx: Context, body: Mapping[str, Any], *, logger=None) -> None:
    """Timer while status.interruption is set: remove what is left of the lost recorder's pod, wait for the
    backoff (interruptions.restart_delay) and start the replacement; then watch it start (start failures, start timeout)
    until it reports and on_session_change ends the interruption. A stop or a deletion meanwhile is stop.py's
    and delete.py's."""
    meta = body["metadata"]
    status = body.get("status") or {}
    interruption = status.get("interruption")
    if not interruption or st.is_terminal(status.get("phase")):
        return
    if (body.get("spec") or {}).get("stop") or meta.get("deletionTimestamp"):
        return
    restarts = status.get("restarts") or 0
    pod = ctx.kube.get_pod(meta["namespace"], object_name(meta["name"]))
    if pod is not None:
        if not owned_by(pod, meta):
            return  # a pod of an earlier session of the same name is still going
        view = podstate.pod_view(pod)
        if podstate.of_lost_recorder(view, status):
            pods.force_remove(ctx, pod, view)  # the lost pod, still terminating (e.g. on a lost node)
        else:
            pods.observe(ctx, pod, session=body, logger=logger)  # the replacement: does it start?
        return
    since = st.parse_time(interruption.get("since")) or st.now_utc()
    if (st.now_utc() - since).total_seconds() < interruptions.restart_delay(restarts):
        return
    create.replace(ctx, body, logger=logger)
