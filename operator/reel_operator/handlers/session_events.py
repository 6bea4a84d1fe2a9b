"""Every session event (the recorder's status reports included) -> conditions, observedGeneration and an Event
per phase change; at the end the pod is removed and the room released. Plus the start-timeout check while the
session is Pending/Starting."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from reel_api import SessionError

from .. import lock
from .. import status as st
from ..names import object_name, owned_by
from . import pods
from .common import Context, parse, update_status


def on_session_change(ctx: Context, body: Mapping[str, Any], *, pod_names: set[str] | None = None,
                      holds_lock: bool = True, logger=None) -> None:
    """``pod_names``: recorder pods that exist in the namespace, ``holds_lock``: whether a room lock names this
    session (both from kopf indexes; None/True = unknown, ask the API)."""
    meta = body["metadata"]
    status = body.get("status") or {}
    phase = status.get("phase")
    if phase is None:
        return  # the create handler has not run yet
    update_status(ctx, body, {}, fresh=False)
    if not st.is_terminal(phase):
        return
    # Final: no recorder pod may stay, the room is free again.
    pod_name = object_name(meta["name"])
    if pod_names is None or pod_name in pod_names:
        pod = ctx.kube.get_pod(meta["namespace"], pod_name)
        if owned_by(pod, meta):
            pods.remove_pod(ctx, pod, st.pod_view(pod))
    if holds_lock:
        with contextlib.suppress(SessionError):
            lock.release(ctx.kube, parse(body))


def check_start(ctx: Context, body: Mapping[str, Any], *, logger=None) -> None:
    """Timer while Pending/Starting: a pod that cannot start produces no more pod events by itself."""
    meta = body["metadata"]
    pod = ctx.kube.get_pod(meta["namespace"], object_name(meta["name"]))
    if pod is not None:
        pods.observe(ctx, pod, session=body, logger=logger)
