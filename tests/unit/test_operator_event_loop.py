"""The operator's work on kopf's event loop: which events end there without a handler thread, the start on a
session's first event (or, with the finalizer put on at admission, in kopf's create handler with its label in
kopf's own patch), and the costs of kopf's own machinery (diff-base, log lines). Measured in
benchmarks/operator_scale.py; these tests pin the behaviour each shortcut must keep."""

from __future__ import annotations

import copy

import kopf
import pytest
from tests.support.fake_kube import FakeKube, IndexedKube, counting_ctx, pod, rooms_index, started

from reel_operator import names
from reel_operator.handlers import common, create, pods, session_events
from reel_operator.settings import Settings


@pytest.fixture
def ctx(monkeypatch):
    return counting_ctx(monkeypatch)


# -- work on the event loop, and the start on a session's first event ---------------------------------------------

def test_a_session_event_is_quiet_only_when_on_session_change_would_do_nothing(ctx):
    body = ctx.kube.add_session("a")
    assert session_events.quiet(body)  # no phase: the create handler has not run
    create.start(ctx, body)
    body = ctx.kube.get_session("media", "a")
    assert session_events.quiet(body)  # Starting, conditions as computed
    stale = copy.deepcopy(body)
    stale["status"]["phase"] = "Recording"  # the recorder's report: the conditions to recompute and write
    assert not session_events.quiet(stale)
    final = copy.deepcopy(body)
    final["status"]["phase"] = "Completed"  # final: the pod and the room lock to remove
    assert not session_events.quiet(final)


def test_a_pod_event_is_quiet_only_when_observe_would_read_nothing(ctx):
    _, hint = started(ctx)
    p = pod(ctx)
    assert pods.quiet(p, hint=hint)  # pending, the session knows it
    assert not pods.quiet(p, hint=None)  # the session not seen yet: read it
    assert not pods.quiet(p, gone=True, hint=hint)
    orphan = copy.deepcopy(p)
    orphan["metadata"]["ownerReferences"] = []
    assert pods.quiet(orphan, hint=hint)  # no session's: observe returns at once


def test_early_is_a_new_sessions_first_event_only():
    from reel_operator.settings import FINALIZER

    body = FakeKube().add_session("a")
    assert create.early(body, FINALIZER)
    assert not create.early({**body, "metadata": {**body["metadata"], "finalizers": [FINALIZER]}}, FINALIZER)
    assert not create.early({**body, "status": {"phase": "Starting"}}, FINALIZER)
    assert not create.early({**body, "metadata": {**body["metadata"], "deletionTimestamp": "x"}}, FINALIZER)


def test_after_an_early_start_the_create_handler_does_nothing_more(ctx):
    body = ctx.kube.add_session("a")
    create.start_early(ctx, body, rooms={})
    assert ctx.kube.sessions[("media", "a")]["status"]["phase"] == "Starting"
    objects, reads = dict(ctx.kube.objects), list(ctx.kube.reads)
    create.start(ctx, body)  # kopf's create handler, on the (older) event with its finalizer
    create.start(ctx, ctx.kube.get_session("media", "a"))  # or one that shows Starting already
    assert ctx.kube.objects == objects and ctx.kube.reads == [*reads, ("session", "a")]
    create.start_early(ctx, body, rooms={})  # a first event seen again: nothing
    assert ctx.kube.objects == objects


def test_an_early_start_that_fails_leaves_the_start_to_the_create_handler(ctx, monkeypatch):
    body = ctx.kube.add_session("a")
    ctx.kube.objects[("Role", "media", "reel-rec-a")] = {"kind": "Role", "metadata": {
        "name": "reel-rec-a", "namespace": "media", "ownerReferences": [{"uid": "uid-of-an-earlier-a"}]}}
    create.start_early(ctx, body, rooms={})  # logged, not raised: kopf's create handler does it again
    assert "uid-a" not in ctx.started and not ctx.starting
    with pytest.raises(kopf.TemporaryError, match="belongs to an earlier session"):
        create.start(ctx, body)
    del ctx.kube.objects[("Role", "media", "reel-rec-a")]  # collected: kopf's retry starts it
    create.start(ctx, body, retry=1)
    assert ctx.kube.sessions[("media", "a")]["status"]["phase"] == "Starting"


def test_the_create_handler_waits_for_an_early_start_under_way(ctx, monkeypatch):
    import threading

    body = ctx.kube.add_session("a")
    entered, release = threading.Event(), threading.Event()
    real_create = ctx.kube.create

    def slow_create(obj):
        if obj["kind"] == "Pod":
            entered.set()
            release.wait(5)
        return real_create(obj)
    monkeypatch.setattr(ctx.kube, "create", slow_create)
    early = threading.Thread(target=create.start_early, args=(ctx, body), kwargs={"rooms": {}})
    early.start()
    assert entered.wait(5)
    handler = threading.Thread(target=create.start, args=(ctx, body))
    handler.start()
    handler.join(0.3)
    assert handler.is_alive()  # waits for the early start
    release.set()
    early.join(5)
    handler.join(5)
    assert not handler.is_alive() and sorted(k for k, _, _ in ctx.kube.objects).count("Pod") == 1
    assert ctx.kube.sessions[("media", "a")]["status"]["phase"] == "Starting"


# -- the event loop's own costs (py-spy over operator_scale.py, 2026-12-01) -------------------------------------
def _loaded_session() -> dict:
    """A session as the watch brings it after a few writes: managedFields, kopf's annotations, a status."""
    return {
        "apiVersion": "reel.dev/v1alpha1", "kind": "RecordingSession",
        "metadata": {"name": "a", "namespace": "media", "uid": "u1", "resourceVersion": "7", "generation": 2,
                     "labels": {"reel.dev/room-key": "k"},
                     "annotations": {"team": "x", "reel.dev/last-handled-configuration": '{"spec":{}}\n',
                                     "kubectl.kubernetes.io/last-applied-configuration": "{}"},
                     "finalizers": ["reel.dev/finalizer"],
                     "managedFields": [{"manager": "kopf", "fieldsV1": {"f:metadata": {"f:annotations": {}}}}] * 5},
        "spec": {"room": {"server": "ws://janus:8188", "id": 1}, "stop": True},
        "status": {"phase": "Starting", "conditions": [{"type": "Ready", "status": "False"}]},
    }


@pytest.mark.parametrize("extra_fields", [[], [("spec", "stop")], [("status", "phase")], ["metadata.finalizers"]])
def test_the_trimmed_diff_base_is_kopfs_essence(extra_fields):
    from reel_operator.essence import TrimmedDiffBaseStorage, trimmed
    body = kopf.Body(_loaded_session())
    kwargs = dict(prefix="reel.dev", key="last-handled-configuration", ignored_fields=[("metadata", "labels", "x")])
    expected = kopf.AnnotationsDiffBaseStorage(**kwargs).build(body=body, extra_fields=extra_fields)
    assert TrimmedDiffBaseStorage(**kwargs).build(body=body, extra_fields=extra_fields) == expected
    light = trimmed(_loaded_session(), extra_fields)
    assert "managedFields" not in light["metadata"] or extra_fields == ["metadata.finalizers"]
    assert ("status" in light) == (extra_fields == [("status", "phase")])


def test_routine_handler_successes_are_not_logged_at_info():
    import logging

    from reel_operator.run import RoutineSuccess
    keep = RoutineSuccess().filter

    def record(level, message):
        return logging.LogRecord("kopf.objects", level, __file__, 1, message, None, None)
    assert not keep(record(logging.INFO, "Handler 'on_pod_event' succeeded."))
    assert not keep(record(logging.INFO, "Timer 'on_start_timer' succeeded."))
    assert keep(record(logging.INFO, "Handler 'on_create' succeeded."))  # once per session: kept
    assert keep(record(logging.INFO, "created recorder pod reel-rec-a"))
    assert keep(record(logging.ERROR, "Handler 'on_pod_event' failed with an exception. Will retry."))


def test_the_operator_freezes_what_its_start_made_and_collects_young_garbage_less_often():
    """main.tune_gc (the end of kopf's startup handler): the start's objects out of every collection, a larger
    young generation."""
    import gc

    from reel_operator import main

    threshold, frozen = gc.get_threshold(), gc.get_freeze_count()
    try:
        main.tune_gc()
        assert gc.get_threshold() == (main.GC_YOUNG, *threshold[1:]) and threshold[0] < main.GC_YOUNG
        assert gc.get_freeze_count() > frozen
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def test_indexers_and_the_event_loop_handlers_take_no_thread():
    """kopf runs a sync function in its handler pool: the indexers and the per-event/per-tick handlers are async."""
    import inspect

    from reel_operator import main
    for fn in (main.recorder_pods, main.room_locks, main.recorder_pod_refs, main.session_hints, main.rooms,
               main.on_session_event, main.on_pod_event, main.on_start_timer, main.on_recording_timer):
        assert inspect.iscoroutinefunction(fn), fn.__name__


def test_a_reporting_recorder_is_not_silent_and_a_silent_one_is():
    from datetime import timedelta

    from reel_operator import status as st
    now = st.now_utc()
    body = {"metadata": {"name": "a", "namespace": "media"},
            "spec": {"room": {"server": "ws://j:8188", "id": 1}, "recording": {"recorderSilenceSeconds": 60}},
            "status": {"phase": "Recording", "heartbeatAt": st.rfc3339(now - timedelta(seconds=5))}}
    assert session_events.silent(body) is None
    body["status"]["heartbeatAt"] = st.rfc3339(now - timedelta(seconds=120))
    assert session_events.silent(body) is not None
    body["spec"]["stop"] = True
    assert session_events.silent(body) is None


def test_kopfs_create_handler_waits_for_the_early_start_without_a_thread(ctx, monkeypatch):
    """The early start is registered before it gets a thread; kopf's on_create (the next event) awaits it on the
    event loop and then does nothing: one thread per starting session, not two."""
    import asyncio
    import functools
    import types

    from reel_operator import main

    body = ctx.kube.add_session("a")
    registered = create.register_early(ctx, "uid-a")
    assert registered is not None and create.register_early(ctx, "uid-a") is None  # one early start per session
    handed = []

    async def in_thread(memo, fn, *args, **kwargs):
        handed.append(fn)
    monkeypatch.setattr(main, "in_thread", in_thread)
    memo = types.SimpleNamespace(reel=ctx)

    async def scenario():
        handler = asyncio.ensure_future(main.on_create(body=body, memo=memo, retry=0, rooms={}, patch=kopf.Patch(),
                                                    logger=None))
        await asyncio.sleep(0.05)
        assert not handler.done()  # waits: the early start has not even had its thread yet
        await asyncio.get_running_loop().run_in_executor(
            None, functools.partial(create.start_early, ctx, body, rooms={}, registered=registered))
        await asyncio.wait_for(handler, 5)
    asyncio.run(scenario())
    assert handed == [] and not ctx.starting and "uid-a" in ctx.started
    assert ctx.kube.sessions[("media", "a")]["status"]["phase"] == "Starting"
    on_create = functools.partial(main.on_create, memo=memo, retry=0, rooms={}, logger=None)
    asyncio.run(on_create(body=body, patch=kopf.Patch()))  # resume on a restart...
    assert handed == []  # ...of a session this process started: nothing
    ctx.started.clear()
    asyncio.run(on_create(body=body, patch=kopf.Patch()))
    assert handed == [create.start]  # another process's session: started in a thread (idempotent)


# -- the finalizer from admission (charts/reel/templates/session-finalizer.yaml) ---------------------------------

def with_finalizer(body: dict) -> dict:
    """The session as the chart's MutatingAdmissionPolicy admits it: kopf's finalizer on from its first event."""
    from reel_operator.settings import FINALIZER
    body["metadata"]["finalizers"] = [FINALIZER]
    return body


def test_a_session_admitted_with_the_finalizer_is_started_by_kopfs_create_handler_not_early():
    from reel_operator.settings import FINALIZER
    body = with_finalizer(FakeKube().add_session("a"))
    assert not create.early(body, FINALIZER)  # kopf has no finalizer to add: its create handler runs at once


def test_in_kopfs_create_handler_the_label_goes_with_kopfs_patch_and_starting_needs_no_answer(monkeypatch):
    """The two round trips as before, but no label patch: the label is handed back for kopf's own patch, and
    Starting is written at the event's resourceVersion (nobody wrote since), reading nothing."""
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setattr(kopf, "event", lambda obj, type, reason, message: None)
    kube = IndexedKube()
    labels: dict[str, str] = {}
    with ThreadPoolExecutor(max_workers=4) as io:
        c = common.Context(kube=kube, settings=Settings(allow_ambient_credentials=True), io=io)
        body = with_finalizer(kube.add_session("a"))
        create.start(c, body, rooms=rooms_index(kube), labels=labels)
    assert kube.label_patches == 0 and kube.reads == []
    assert labels == {names.LABEL_ROOM_KEY: names.room_key(common.parse(body))}
    assert set(kube.created[:3]) == {"Lease", "ServiceAccount", "Role"} and set(kube.created[3:]) == {"RoleBinding",
                                                                                                     "Pod"}
    session = kube.sessions[("media", "a")]
    assert names.LABEL_ROOM_KEY not in (session["metadata"].get("labels") or {})  # kopf's patch brings it
    assert (session["status"]["phase"], session["status"]["pod"]) == ("Starting", "reel-rec-a")


def test_a_session_labelled_already_gets_no_label_again(monkeypatch):
    monkeypatch.setattr(kopf, "event", lambda obj, type, reason, message: None)
    kube = IndexedKube()
    c = common.Context(kube=kube, settings=Settings(allow_ambient_credentials=True))
    body = with_finalizer(kube.add_session("a"))
    body["metadata"]["labels"] = {names.LABEL_ROOM_KEY: names.room_key(common.parse(body))}
    labels: dict[str, str] = {}
    create.start(c, body, rooms=rooms_index(kube), labels=labels)
    assert labels == {} and kube.label_patches == 0
    assert kube.sessions[("media", "a")]["status"]["phase"] == "Starting"


def test_someone_writing_before_starting_costs_one_read_not_a_lost_write(monkeypatch):
    """Should the session change between its event and the Starting write (a webhook journal, a user's label),
    the write is refused at the old resourceVersion and computed again from a fresh read."""
    monkeypatch.setattr(kopf, "event", lambda obj, type, reason, message: None)
    kube = IndexedKube()
    c = common.Context(kube=kube, settings=Settings(allow_ambient_credentials=True))
    body = with_finalizer(kube.add_session("a"))
    kube.conflicts = 1  # someone writes just before the Starting write
    create.start(c, body, rooms=rooms_index(kube), labels={})
    status = kube.sessions[("media", "a")]["status"]
    assert status["phase"] == "Starting" and status["activeParticipants"] == 3  # theirs kept, ours added
    assert kube.reads == [("session", "a")] and kube.label_patches == 0


def test_kopfs_create_handler_puts_the_label_into_kopfs_patch(ctx, monkeypatch):
    import asyncio
    import types

    from reel_operator import main

    async def in_thread(memo, fn, *args, **kwargs):
        fn(*args, **kwargs)
    monkeypatch.setattr(main, "in_thread", in_thread)
    body = with_finalizer(ctx.kube.add_session("a"))
    patch = kopf.Patch()
    asyncio.run(main.on_create(body=body, memo=types.SimpleNamespace(reel=ctx), retry=0, rooms=rooms_index(ctx.kube),
                               patch=patch, logger=None))
    assert patch == {"metadata": {"labels": {names.LABEL_ROOM_KEY: names.room_key(common.parse(body))}}}
    assert ctx.kube.sessions[("media", "a")]["status"]["phase"] == "Starting"
