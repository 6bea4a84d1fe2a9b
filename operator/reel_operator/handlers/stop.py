"""spec.stop: true -> the recorder is told to stop (graceful pod deletion = SIGTERM, its Requested stop): it
closes its segments and finishes uploading within the termination grace period, reporting Uploading and then
Completed/BackedUp itself; the pod is gone when it exits. Stopped while a lost recorder was being replaced
(no current pod): Completed at once, the recording ends where the lost recorder stopped."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reel_api import Phase, StopReason

from .. import interruptions
from .. import status as st
from ..names import object_name
from . import pods
from .common import Context, update_status


def stop(ctx: Context, body: Mapping[str, Any], *, reason: StopReason = StopReason.REQUESTED, logger=None) -> None:
    meta = body["metadata"]
    status = body.get("status") or {}
    if st.is_terminal(status.get("phase")):
        return
    if meta.get("uid") in ctx.stopped:
        # Told already by this process: kopf runs the handler again on the event from before its own patch when
        # the watch lags behind it (settings.persistence.consistency_timeout, main.py), ~97 % of 1,000 stops on a
        # loaded machine. What it would do is done: the pod is being deleted, the status says Stopping.
        return
    pod_name = object_name(meta["name"])
    pod, view = pods.current_pod(ctx, body)
    if view is None:
        update_status(ctx, body, {"phase": Phase.COMPLETED, "stopReason": reason, "message":
                                  interruptions.stopped_while_interrupted(status) or
                                  "stopped before the recorder started: nothing recorded"})
        ctx.stopped.add(meta.get("uid"))
        return
    if not view.deleting:
        # the pod's own terminationGracePeriodSeconds applies; a recorder that already exited goes at once
        grace = 0 if view.terminated is not None or not view.running else None
        if ctx.kube.delete_pod(meta["namespace"], pod_name, grace_seconds=grace, uid=pod["metadata"].get("uid")):
            ctx.stop_sent.add(meta.get("uid"))
        if logger:
            logger.info("stopping recorder pod %s (%s)", pod_name, reason)
    # from the body as given; should the recorder have written meanwhile, its resourceVersion refuses the patch
    # and update_status reads the session and computes again
    update_status(ctx, body, {"phase": Phase.STOPPING, "stopReason": reason}, fresh=False,
                  acted=meta.get("generation"))  # the stop (spec.stop, the deletion) is acted on: the pod is told
    ctx.stopped.add(meta.get("uid"))
