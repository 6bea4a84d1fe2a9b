"""kopf wiring: decorators and startup settings only; the logic is in ``handlers/``.

Run: ``reel-operator`` (reads the settings from the environment, see settings.py), or
``kopf run -m reel_operator.main --all-namespaces`` (namespaces and liveness then come from kopf's flags).
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import functools
import gc
import logging
from concurrent.futures import ThreadPoolExecutor

import kopf

from reel_api import GROUP, PLURAL, TERMINAL_PHASES, VERSION, Phase

from . import accounts, lock, podstate
from .essence import TrimmedDiffBaseStorage
from .handlers import backfill, create, delete, pods, session_events, stop
from .handlers.common import Context, ctx_of, post_event
from .kube import Kube, load_client
from .names import LABEL_MANAGED_BY, LABEL_ROOM_KEY, MANAGED_BY, object_name, owner_session
from .settings import ANNOTATION_PREFIX, FINALIZER, Settings
from .webhooks import journal
from .webhooks.delivery import Delivery

SESSIONS = (GROUP, VERSION, PLURAL)
OURS = {LABEL_MANAGED_BY: MANAGED_BY}
OURS_SELECTOR = f"{LABEL_MANAGED_BY}={MANAGED_BY}"
#: Parallel API calls one handler may make (create.create_recorder: two at once).
IO_PER_THREAD = 2


#: Allocations between two collections of CPython's youngest generation (its default: 700). The operator's garbage
#: is mostly watch bodies and API answers, freed by reference counting; with the default, those that lived a few
#: seconds (kopf's per-object state, the handlers in flight) were promoted, and at 1,000 sessions a full collection
#: ran every 5-8 s for 0.33 s (p50; max 0.6 s) with every thread stopped: the operator's own part of the tail of
#: apply -> pod. Measured (benchmarks/README.md, ninth round): 10,000 leaves one full collection in the run and young
#: ones of ~16 ms; 50,000 none, but young ones of ~76 ms and RSS +14 MiB (cyclic garbage kept longer).
GC_YOUNG = 10_000


def tune_gc() -> None:
    """At the end of ``configure`` (so however the operator is run: ``reel-operator`` or ``kopf run``): what the
    start made (modules, the API client's model classes) is never scanned again (gc.freeze), and objects are
    promoted only when they outlive GC_YOUNG allocations."""
    gc.freeze()
    gc.set_threshold(GC_YOUNG, *gc.get_threshold()[1:])


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_) -> None:
    cfg = Settings.from_env()
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
    settings.persistence.diffbase_storage = TrimmedDiffBaseStorage(  # kopf's, without its deep copy of each body
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration",
        ignored_fields=[("metadata", "annotations", journal.ANNOTATION),  # the webhook journal is no change
                        ("metadata", "labels", LABEL_ROOM_KEY)])  # nor is the room key the create handler sets
    settings.posting.reporting_component = "reel-operator"
    settings.posting.level = logging.WARNING  # handler logs become Events only when they are warnings
    settings.peering.name = cfg.peering_name
    settings.peering.priority = cfg.peering_priority
    settings.peering.standalone = cfg.standalone or settings.peering.standalone
    settings.watching.label_selectors["v1", "pods"] = OURS_SELECTOR
    settings.watching.label_selectors["coordination.k8s.io", "leases"] = OURS_SELECTOR
    settings.watching.server_timeout = 300
    # Sync handlers run in this pool; they mostly wait on the API server, so more threads than cores (kopf's
    # default is cores + 4), one kept-open API connection each (benchmarks/operator_scale.py measured both).
    settings.execution.max_workers = cfg.handler_threads
    # After its own patch kopf waits for the watch to bring that version before it runs change handlers again;
    # when a loaded API server's watch lags past kopf's 5 s default, it goes ahead on the older event and runs
    # the create handler a second time (idempotent, ~10 API calls): ~80 % of 1,000 sessions on a loaded machine.
    # Beyond 30 s create.start itself sees that this process started the session (Context.started).
    settings.persistence.consistency_timeout = 30
    # A kept-open API connection for each thread that may call at once: handlers, the threads that finish starts
    # (as many), the calls both run beside them (reel-io), webhook workers (urllib3 closes, with a warning, those
    # beyond its pool). The account pool's reads and creates run in threads of their own: a start's calls never
    # queue behind them.
    account_threads = max(1, cfg.handler_threads // 2) if cfg.account_pool else 0
    callers = 2 * cfg.handler_threads
    connections = (1 + IO_PER_THREAD) * callers + cfg.webhook_workers + account_threads
    kube = Kube(load_client(pool_size=connections))
    memo.reel = Context(kube=kube, settings=cfg,
                        io=ThreadPoolExecutor(max_workers=IO_PER_THREAD * callers, thread_name_prefix="reel-io"),
                        finish=ThreadPoolExecutor(max_workers=cfg.handler_threads, thread_name_prefix="reel-finish"))
    if cfg.account_pool:
        memo.accounts_pool = ThreadPoolExecutor(max_workers=account_threads, thread_name_prefix="reel-accounts")
        memo.reel.accounts = accounts.AccountPool(kube, size=cfg.account_pool,
                                                  annotations=cfg.recorder_sa_annotations,
                                                  submit=memo.accounts_pool.submit, owner=account_owner(kube, cfg))
    memo.executor = settings.execution.executor  # where the async start timer sends its rare API work
    memo.reel.webhooks = Delivery(memo.reel.kube, cfg, memo.reel.metrics, post_event=post_event).start()
    if cfg.metrics_port:
        memo.metrics_server = memo.reel.metrics.serve(cfg.metrics_port)
    tune_gc()  # last: what the start made is frozen with the rest


def account_owner(kube: Kube, cfg: Settings) -> dict | None:
    """The owner reference of the free accounts made ahead: to the ClusterRole REEL_ACCOUNT_OWNER names (the
    chart's), read once; None without it (then they stay after an uninstall: the chart's NOTES.txt)."""
    if not cfg.account_owner:
        return None
    try:
        role = kube.get_cluster_role(cfg.account_owner)
    except Exception as err:
        logging.getLogger("reel.operator").warning("cannot read ClusterRole %s (REEL_ACCOUNT_OWNER): %s; the "
                                                   "accounts made ahead get no owner", cfg.account_owner, err)
        return None
    return accounts.owner_of(role) if role else None


@kopf.on.cleanup()
def cleanup(memo: kopf.Memo, **_) -> None:
    if getattr(memo, "reel", None) is not None and memo.reel.webhooks is not None:
        memo.reel.webhooks.stop()
    if getattr(memo, "reel", None) is not None:
        for pool in (memo.reel.io, memo.reel.finish):
            if pool is not None:
                pool.shutdown(wait=False)
    if getattr(memo, "accounts_pool", None) is not None:
        memo.accounts_pool.shutdown(wait=False, cancel_futures=True)
    server = getattr(memo, "metrics_server", None)
    if server is not None:
        server.shutdown()
        server.server_close()


@kopf.on.probe(id="sessions")
def probe(memo: kopf.Memo, **_) -> str:
    return "ok" if getattr(memo, "reel", None) else "starting"


# -- indexes: what exists, without API calls ------------------------------------------------------------------
# Async, and pure: kopf runs a sync indexer in its handler pool, where on a busy operator each event waited behind
# the handlers' API calls before any handler of it ran (the intake of benchmarks/operator_scale.py).
@kopf.index("v1", "pods", labels=OURS)
async def recorder_pods(namespace: str, name: str, **_):
    return {namespace: name}


@kopf.index("coordination.k8s.io", "v1", "leases", labels=OURS)
async def room_locks(spec, meta, **_):
    """Room locks by holder -> their resourceVersion (the release deletes at it without reading the Lease)."""
    return {spec.get("holderIdentity"): meta.get("resourceVersion")}


@kopf.index("v1", "pods", labels=OURS)
async def recorder_pod_refs(namespace: str, name: str, body, **_):
    """Recorder pods controlled by a session -> podstate.PodRef (uid, owner, view): the start timer sees a pod that
    runs, and a stop deletes the pod, without reading it."""
    owner = owner_session(body)
    return {(namespace, name): podstate.PodRef(uid=body["metadata"].get("uid"), owner_uid=owner[1],
                                               view=podstate.pod_view(body))} if owner else {}


def pod_ref(index: kopf.Index, namespace: str, session: str) -> podstate.PodRef | None:
    """The session's recorder pod as ``recorder_pod_refs`` holds it, if it does."""
    return next(iter(index.get((namespace, object_name(session)), [])), None)


@kopf.index(*SESSIONS)
async def session_hints(namespace: str, name: str, body, **_):
    """Each session as last seen (podstate.SessionHint): lets a pod event that changes nothing skip reading it."""
    return {(namespace, name): podstate.session_hint(body)}


@kopf.index(*SESSIONS)
async def rooms(body, **_):
    """Each session by its room key (computed from the spec: indexed from its first event) -> lock.Claim: the room
    check of the create handler reads nothing unless an earlier active session of the room is shown (lock.py)."""
    return lock.claim_of(body)


# -- sessions --------------------------------------------------------------------------------------------------
@kopf.on.create(*SESSIONS)
@kopf.on.resume(*SESSIONS)
async def on_create(body, memo: kopf.Memo, retry: int, rooms: kopf.Index, patch: kopf.Patch, logger,
                    **_) -> None:
    """Async: on a new session's second event the early start (create.start_early) is under way or done, and this
    waits for it on the event loop instead of holding a handler thread (it held one per starting session, which
    made the next sessions' starts queue for a thread). A start to do (a session that came with the finalizer from
    admission, at operator start, after a failed early start, on kopf's retries) takes a thread until its pod is
    created, and the rest of it (create._then, in ``ctx.finish``) is awaited here; its room-key label goes out with
    kopf's own patch after this handler (``patch``), not as a patch of its own."""
    ctx = ctx_of(memo)
    running = create.early_run(ctx, body)
    if running is not None:
        await asyncio.wrap_future(running)
    if create.started_here(ctx, body):
        return
    labels: dict[str, str] = {}
    registered = create.register_early(ctx, body["metadata"].get("uid"))  # counts as starting (pods.quiet)
    try:
        rest = await in_thread(memo, create.start, ctx, body, retry=retry, rooms=rooms, labels=labels,
                               logger=logger, registered=registered)
        if rest is not None:  # the start after its pod, in ctx.finish (create._then): awaited, no thread held
            await asyncio.shield(asyncio.wrap_future(rest))
    finally:
        if labels:
            patch.setdefault("metadata", {}).setdefault("labels", {}).update(labels)


@kopf.on.update(*SESSIONS, field="spec.stop", new=True)
def on_stop(body, memo: kopf.Memo, recorder_pod_refs: kopf.Index, logger, **_) -> None:
    meta = body["metadata"]
    stop.stop(ctx_of(memo), body, logger=logger, pod=pod_ref(recorder_pod_refs, meta["namespace"], meta["name"]))


@kopf.on.event(*SESSIONS)
async def on_session_event(event, body, memo: kopf.Memo, recorder_pods: kopf.Index, room_locks: kopf.Index,
                           rooms: kopf.Index, logger, **_) -> None:
    """Async: most events (a new session's first ones, a status as it should be) end here on the event loop; only
    one with something to write or remove takes a handler thread (session_events.quiet). A new session's first
    event starts it in a handler thread without waiting (create.start_early): kopf goes on to add its finalizer
    meanwhile, and its create handler, on the next event, finds the work done."""
    meta = body["metadata"]
    deleted = event.get("type") == "DELETED"
    ctx_of(memo).metrics.session(meta["namespace"], meta["name"], None if deleted else body)
    webhooks = ctx_of(memo).webhooks
    if deleted:
        ctx_of(memo).started.discard(meta.get("uid"))
        ctx_of(memo).stopped.discard(meta.get("uid"))
        ctx_of(memo).stop_sent.discard(meta.get("uid"))
        if webhooks is not None:
            webhooks.forget(meta["namespace"], meta["name"])
        return
    if webhooks is not None:
        webhooks.observe(body)  # derives and queues the session's webhook events; never waits for a receiver
    if create.early(body, FINALIZER):
        registered = create.register_early(ctx_of(memo), meta.get("uid"))  # from now on kopf's on_create waits
        if registered is not None:
            # a copy: kopf goes on with the object's next events meanwhile, and a timer's body is live
            to_pool(memo, create.start_early, ctx_of(memo), copy.deepcopy(dict(body)), rooms=rooms, logger=logger,
                    registered=registered)  # not awaited
    if session_events.quiet(body):
        return
    holder = lock.holder_identity_of(meta)
    await in_thread(memo, session_events.on_session_change, ctx_of(memo), body,
                    pod_names=set(recorder_pods.get(meta["namespace"], [])), holds_lock=holder in room_locks,
                    lock_version=next(iter(room_locks.get(holder, [])), None), logger=logger)


def to_pool(memo: kopf.Memo, fn, *args, **kwargs) -> asyncio.Future:
    """``fn(*args, **kwargs)`` as kopf runs a sync handler: in its pool, in a copy of this context (kopf.event needs
    it) -> its future."""
    call = functools.partial(fn, *args, **kwargs)
    return asyncio.get_running_loop().run_in_executor(memo.executor,
                                                      functools.partial(contextvars.copy_context().run, call))


async def in_thread(memo: kopf.Memo, fn, *args, **kwargs):
    """``to_pool``, awaited, not cancelled midway -> what ``fn`` returned."""
    return await asyncio.shield(to_pool(memo, fn, *args, **kwargs))


@kopf.timer(*SESSIONS, interval=5, initial_delay=5,
            when=lambda status, **_: status.get("phase") in (Phase.PENDING, Phase.STARTING))
async def on_start_timer(body, memo: kopf.Memo, recorder_pod_refs: kopf.Index, logger, **_) -> None:
    """Async: most ticks (a pod the index shows running) end here on the event loop, taking no handler thread."""
    meta, status = body["metadata"], body.get("status") or {}
    ref = pod_ref(recorder_pod_refs, meta["namespace"], meta["name"])
    pod_running = ref is not None and ref.runs_for(meta.get("uid"), status.get("restarts") or 0)
    if session_events.start_settled(body, pod_running=pod_running):
        return
    await in_thread(memo, session_events.check_start, ctx_of(memo), body, logger=logger, pod_running=pod_running)


@kopf.timer(*SESSIONS, interval=10, initial_delay=10,
            when=lambda status, **_: status.get("phase") in (Phase.RECORDING, Phase.PAUSED)
            and not status.get("interruption"))
async def on_recording_timer(body, memo: kopf.Memo, logger, **_) -> None:
    """A recorder that stopped reporting (status.heartbeatAt) is treated as lost. Async: a recorder that reports
    (nearly every tick) ends here on the event loop, without a handler thread."""
    if session_events.silent(body):
        await in_thread(memo, session_events.check_silence, ctx_of(memo), body, logger=logger)


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
async def on_pod_event(event, body, memo: kopf.Memo, session_hints: kopf.Index, logger, **_) -> None:
    """Async: a pod event that changes nothing (pods.quiet: pending, or running and named by its session) ends here
    on the event loop; the others are judged in a handler thread."""
    gone = event.get("type") == "DELETED"
    namespace = body["metadata"]["namespace"]
    ctx_of(memo).metrics.pod(namespace, body["metadata"]["name"], gone=gone)
    owner = owner_session(body)
    hint = next(iter(session_hints.get((namespace, owner[0]), [])), None) if owner else None
    if pods.quiet(body, gone=gone, hint=hint, ctx=ctx_of(memo)):
        return
    await in_thread(memo, pods.observe, ctx_of(memo), body, gone=gone, hint=hint, logger=logger)
