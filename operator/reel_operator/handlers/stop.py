"""spec.stop: true -> the recorder is told to stop (graceful pod deletion = SIGTERM, its Requested stop): it
closes its segments and finishes uploading within the termination grace period, reporting Uploading and then
Completed/BackedUp itself; the pod is gone when it exits. Stopped while a lost recorder was being replaced
(no current pod): Completed at once, the recording ends where the lost recorder stopped. The pod the watch shows
is deleted without a read first (its uid as the precondition); only when that is not the pod any more is it read."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reel_api import Phase, StopReason

from .. import interruptions, podstate
from .. import status as st
from ..names import object_name
from . import pods
from .common import Context, update_status


def stop(ctx: Context, body: Mapping[str, Any], *, reason: StopReason = StopReason.REQUESTED, logger=None,
         pod: podstate.PodRef | None = None) -> None:
    """``pod``: the session's recorder pod as the pod watch showed it (main.py's index), deleted without reading
    it first when it is the session's current one (``_stop_known``); None, or a pod that is not that one any
    more: the pod is read and judged (``pods.current_pod``)."""
    meta = body["metadata"]
    status = body.get("status") or {}
    if st.is_terminal(status.get("phase")):
        return
    if meta.get("uid") in ctx.stopped:
        # Told already by this process: kopf runs the handler again on the event from before its own patch when
        # the watch lags behind it (settings.persistence.consistency_timeout, main.py), ~97 % of 1,000 stops on a
        # loaded machine. What it would do is done: the pod is being deleted, the status says Stopping.
        return
    if not _stop_known(ctx, body, pod):
        current, view = pods.current_pod(ctx, body)
        if view is None:
            update_status(ctx, body, {"phase": Phase.COMPLETED, "stopReason": reason, "message":
                                      interruptions.stopped_while_interrupted(status) or
                                      "stopped before the recorder started: nothing recorded"})
            ctx.stopped.add(meta.get("uid"))
            return
        if not view.deleting:
            _delete(ctx, meta, current["metadata"].get("uid"), view)
    if logger:
        logger.info("stopping recorder pod %s (%s)", object_name(meta["name"]), reason)
    # from the body as given; should the recorder have written meanwhile, its resourceVersion refuses the patch
    # and update_status reads the session and computes again
    update_status(ctx, body, {"phase": Phase.STOPPING, "stopReason": reason}, fresh=False,
                  acted=meta.get("generation"))  # the stop (spec.stop, the deletion) is acted on: the pod is told
    ctx.stopped.add(meta.get("uid"))


def _stop_known(ctx: Context, body: Mapping[str, Any], pod: podstate.PodRef | None) -> bool:
    """The pod the watch showed told to stop without a read: True when it is the session's current pod (not
    another session's, not a lost recorder's of an earlier restart number) and it is being deleted already or its
    deletion was sent now; False when the pod must be read: none shown, not the current one, or the deletion found
    another pod of that name or none (its uid precondition)."""
    meta = body["metadata"]
    if pod is None or pod.owner_uid != meta.get("uid") or podstate.of_lost_recorder(pod.view, body.get("status") or {}):
        return False
    return pod.view.deleting or _delete(ctx, meta, pod.uid, pod.view)


def _delete(ctx: Context, meta: Mapping[str, Any], pod_uid: str | None, view: podstate.PodView) -> bool:
    """Delete the recorder pod of uid ``pod_uid``: with the pod's own terminationGracePeriodSeconds (the recorder
    closes and uploads), at once when its recorder already exited or never started. -> whether it was sent."""
    grace = 0 if view.terminated is not None or not view.running else None
    sent = ctx.kube.delete_pod(meta["namespace"], object_name(meta["name"]), grace_seconds=grace, uid=pod_uid)
    if sent:
        ctx.stop_sent.add(meta.get("uid"))
    return sent
