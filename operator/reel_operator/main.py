"""kopf wiring: decorators and startup settings only; the logic is in ``handlers/``.

Run: ``reel-operator`` (reads the settings from the environment, see settings.py), or
``kopf run -m reel_operator.main --all-namespaces`` (namespaces and liveness then come from kopf's flags).
"""

from __future__ import annotations

import logging

import kopf

from reel_api import GROUP, PLURAL, TERMINAL_PHASES, VERSION, Phase

from . import lock
from .handlers import backfill, create, delete, pods, session_events, stop
from .handlers.common import Context, ctx_of
from .kube import Kube, load_client
from .names import LABEL_MANAGED_BY, MANAGED_BY
from .settings import ANNOTATION_PREFIX, FINALIZER, Settings

SESSIONS = (GROUP, VERSION, PLURAL)
OURS = {LABEL_MANAGED_BY: MANAGED_BY}
OURS_SELECTOR = f"{LABEL_MANAGED_BY}={MANAGED_BY}"


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_) -> None:
    cfg = Settings.from_env()
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration")
    settings.posting.reporting_component = "reel-operator"
    settings.posting.level = logging.WARNING  # handler logs become Events only when they are warnings
    settings.peering.name = cfg.peering_name
    settings.peering.priority = cfg.peering_priority
    settings.peering.standalone = cfg.standalone or settings.peering.standalone
    settings.watching.label_selectors["v1", "pods"] = OURS_SELECTOR
    settings.watching.label_selectors["coordination.k8s.io", "leases"] = OURS_SELECTOR
    settings.watching.server_timeout = 300
    memo.reel = Context(kube=Kube(load_client()), settings=cfg)
    if cfg.metrics_port:
        memo.metrics_server = memo.reel.metrics.serve(cfg.metrics_port)


@kopf.on.cleanup()
def cleanup(memo: kopf.Memo, **_) -> None:
    server = getattr(memo, "metrics_server", None)
    if server is not None:
        server.shutdown()
        server.server_close()


@kopf.on.probe(id="sessions")
def probe(memo: kopf.Memo, **_) -> str:
    return "ok" if getattr(memo, "reel", None) else "starting"


# -- indexes: what exists, without API calls ------------------------------------------------------------------
@kopf.index("v1", "pods", labels=OURS)
def recorder_pods(namespace: str, name: str, **_):
    return {namespace: name}


@kopf.index("coordination.k8s.io", "v1", "leases", labels=OURS)
def room_locks(spec, **_):
    return {spec.get("holderIdentity"): True}


# -- sessions --------------------------------------------------------------------------------------------------
@kopf.on.create(*SESSIONS)
@kopf.on.resume(*SESSIONS)
def on_create(body, memo: kopf.Memo, retry: int, logger, **_) -> None:
    create.start(ctx_of(memo), body, retry=retry, logger=logger)


@kopf.on.update(*SESSIONS, field="spec.stop", new=True)
def on_stop(body, memo: kopf.Memo, logger, **_) -> None:
    stop.stop(ctx_of(memo), body, logger=logger)


@kopf.on.event(*SESSIONS)
def on_session_event(event, body, memo: kopf.Memo, recorder_pods: kopf.Index, room_locks: kopf.Index,
                     logger, **_) -> None:
    meta = body["metadata"]
    deleted = event.get("type") == "DELETED"
    ctx_of(memo).metrics.session(meta["namespace"], meta["name"], None if deleted else body)
    if deleted:
        return
    holder = lock.holder_identity_of(meta)
    session_events.on_session_change(ctx_of(memo), body, pod_names=set(recorder_pods.get(meta["namespace"], [])),
                                     holds_lock=holder in room_locks, logger=logger)


@kopf.timer(*SESSIONS, interval=5, initial_delay=5,
            when=lambda status, **_: status.get("phase") in (Phase.PENDING, Phase.STARTING))
def on_start_timer(body, memo: kopf.Memo, logger, **_) -> None:
    session_events.check_start(ctx_of(memo), body, logger=logger)


@kopf.timer(*SESSIONS, interval=10, initial_delay=10,
            when=lambda status, **_: status.get("phase") in (Phase.RECORDING, Phase.PAUSED)
            and not status.get("interruption"))
def on_recording_timer(body, memo: kopf.Memo, logger, **_) -> None:
    """A recorder that stopped reporting (status.heartbeatAt) is treated as lost."""
    session_events.check_silence(ctx_of(memo), body, logger=logger)


@kopf.timer(*SESSIONS, interval=1, initial_delay=1,
            when=lambda status, **_: bool(status.get("interruption")) and status.get("phase") not in TERMINAL_PHASES)
def on_interruption_timer(body, memo: kopf.Memo, logger, **_) -> None:
    """A lost recorder: start its replacement after the backoff, then watch it start."""
    session_events.check_interruption(ctx_of(memo), body, logger=logger)


@kopf.timer(*SESSIONS, interval=backfill.INTERVAL, initial_delay=1, when=lambda status, **_: backfill.wanted(status))
def on_backfill_timer(body, memo: kopf.Memo, logger, **_) -> None:
    """A BackedUp session: the backfill Job moves the backup into the primary, then Completed."""
    backfill.check(ctx_of(memo), body, logger=logger)


@kopf.on.delete(*SESSIONS)
def on_delete(body, memo: kopf.Memo, runtime, logger, **_) -> None:
    delete.delete(ctx_of(memo), body, runtime_seconds=runtime.total_seconds(), logger=logger)


# -- recorder pods ---------------------------------------------------------------------------------------------
@kopf.on.event("v1", "pods", labels=OURS)
def on_pod_event(event, body, memo: kopf.Memo, logger, **_) -> None:
    gone = event.get("type") == "DELETED"
    ctx_of(memo).metrics.pod(body["metadata"]["namespace"], body["metadata"]["name"], gone=gone)
    pods.observe(ctx_of(memo), body, gone=gone, logger=logger)
