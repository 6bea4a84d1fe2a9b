"""Deleting a session (our finalizer holds it): stop the recorder like spec.stop, wait for it to finish
uploading, then let the session go. Bounded: after REEL_DELETE_TIMEOUT_SECONDS the pod is force-deleted and
the finalizer removed anyway, so a deletion never hangs."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import kopf

from reel_api import ConditionReason, Phase, SessionError, StopReason

from .. import interruptions, lock
from .. import status as st
from ..names import object_name
from . import pods
from .common import Context, parse, post_event, update_status

POLL_SECONDS = 2


def delete(ctx: Context, body: Mapping[str, Any], *, runtime_seconds: float, logger=None) -> None:
    meta = body["metadata"]
    with contextlib.suppress(SessionError):
        lock.release(ctx.kube, parse(body))
    pod_name = object_name(meta["name"])
    status = body.get("status") or {}
    phase = status.get("phase")
    pod, view = pods.current_pod(ctx, body)
    if pod is None:
        if not st.is_terminal(phase):
            update_status(ctx, body, {"phase": Phase.COMPLETED, "stopReason": StopReason.DELETED, "message":
                                      interruptions.stopped_while_interrupted(status) or
                                      "deleted before the recorder started: nothing recorded"})
        return
    if view.terminated is not None or not view.running or st.is_terminal(phase):
        if not view.deleting or view.terminated is not None:
            ctx.kube.delete_pod(meta["namespace"], pod_name, grace_seconds=0, uid=pod["metadata"].get("uid"))
        return
    if runtime_seconds > ctx.settings.delete_timeout_seconds:
        ctx.kube.delete_pod(meta["namespace"], pod_name, grace_seconds=0, uid=pod["metadata"].get("uid"))
        limit = ctx.settings.delete_timeout_seconds
        post_event(body, st.WARNING, ConditionReason.DELETE_TIMEOUT,
                   f"the recorder did not finish within {limit:.0f} s: pod force-deleted, the last segments may "
                   "be missing")
        return
    if not view.deleting:
        ctx.kube.delete_pod(meta["namespace"], pod_name, uid=pod["metadata"].get("uid"))
        if logger:
            logger.info("session deleted: stopping recorder pod %s", pod_name)
        update_status(ctx, body, {"phase": Phase.STOPPING, "stopReason": StopReason.DELETED})
    raise kopf.TemporaryError("waiting for the recorder to finish uploading", delay=POLL_SECONDS)
