"""Recorder ServiceAccounts made ahead (reel_operator/accounts.py): the pool, and a start that creates its pod in
the first round trip with one of them; against the in-memory API of test_operator_handlers."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

import kopf
import pytest
from tests.support.fake_kube import IndexedKube, rooms_index

from reel_operator import accounts, names
from reel_operator.handlers import common, create
from reel_operator.settings import Settings


def wait_until(check, what: str, timeout: float = 10.0):
    """The pool's reads and creates run in its threads: wait for their outcome (not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what}")


class OrderedKube(IndexedKube):
    """Records each request as (kind or verb, name) and, under a lock, which requests were in flight together."""

    def __init__(self):
        super().__init__()
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []
        self.patched: list[str] = []
        self.pod_accounts: list[str] = []

    def create(self, body):
        with self.lock:
            self.requests.append((body["kind"], body["metadata"]["name"]))
            if body["kind"] == "Pod":
                self.pod_accounts.append(body["spec"]["serviceAccountName"])
            return super().create(body)

    def patch_service_account(self, ns, name, patch):
        with self.lock:
            self.patched.append(name)
            return super().patch_service_account(ns, name, patch)


@pytest.fixture
def quiet_events(monkeypatch):
    monkeypatch.setattr(kopf, "event", lambda obj, type, reason, message: None)


@pytest.fixture
def started(quiet_events):
    """A Context with an io pool and an account pool of 4, its namespace read and filled (nothing taken yet)."""
    kube = OrderedKube()
    with ThreadPoolExecutor(max_workers=4) as io, ThreadPoolExecutor(max_workers=2) as background:
        c = common.Context(kube=kube, settings=Settings(allow_ambient_credentials=True), io=io)
        role = accounts.owner_of({"metadata": {"name": "reel-operator-reel-system", "uid": "role-uid"}})
        c.accounts = accounts.AccountPool(kube, size=4, annotations={}, submit=background.submit, owner=role)
        assert c.accounts.take("media") is None  # the first take reads the namespace and fills it
        wait_until(lambda: c.accounts.ready("media") == 4, "the pool filled")
        kube.requests.clear()
        kube.created.clear()
        yield c
        wait_until(lambda: not any(c.accounts._making.values()), "the pool's creates answered")


def account_of(kube, name: str) -> dict:
    return kube.objects[("ServiceAccount", "media", name)]


def test_a_pooled_account_is_bound_to_nothing_and_named_apart_from_session_objects():
    account = accounts.build_account("media", {"eks.amazonaws.com/role-arn": "arn:x"})
    meta = account["metadata"]
    assert meta["name"].startswith(accounts.ACCOUNT_PREFIX) and not meta["name"].startswith(names.OBJECT_PREFIX)
    assert accounts.pooled(meta["name"]) and not accounts.pooled(names.object_name("s"))
    assert meta["labels"][accounts.LABEL_POOL] == "free" and "ownerReferences" not in meta
    assert meta["annotations"] == {"eks.amazonaws.com/role-arn": "arn:x"}
    assert account["automountServiceAccountToken"] is False
    assert accounts.build_account("media")["metadata"]["name"] != meta["name"]
    role = accounts.owner_of({"metadata": {"name": "reel-operator-reel-system", "uid": "role-uid"}})
    owned = accounts.build_account("media", owner=role)["metadata"]["ownerReferences"]
    assert owned == [{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                      "name": "reel-operator-reel-system", "uid": "role-uid"}]  # no controller, blocks nothing


def test_accounts_left_by_an_earlier_process_are_free_only_when_nothing_uses_them():
    def acct(name, **meta):
        return {"metadata": {"name": name, **meta}}
    role = accounts.owner_of({"metadata": {"name": "reel-operator-reel-system", "uid": "role-uid"}})
    session = {"apiVersion": "reel.dev/v1alpha1", "kind": "RecordingSession", "name": "s", "uid": "u",
               "controller": True}
    left = [acct("reel-acct-free", ownerReferences=[role]), acct("reel-acct-owned", ownerReferences=[session]),
            acct("reel-acct-used"), acct("reel-acct-old", annotations={"x": "1"}),
            acct("reel-acct-going", deletionTimestamp="2026-12-02T10:00:00Z")]
    pods = [{"spec": {"serviceAccountName": "reel-acct-used"}}]
    assert accounts.free_accounts(left, pods, {}) == (["reel-acct-free"], ["reel-acct-old"])


def test_the_pool_reads_a_namespace_once_keeps_it_full_and_reuses_what_an_earlier_process_left():
    kube = OrderedKube()
    kube.create(accounts.build_account("media"))  # left by an earlier process, unused
    used = kube.create(accounts.build_account("media"))[0]["metadata"]["name"]
    kube.objects[("Pod", "media", "reel-rec-x")] = {"metadata": {"name": "reel-rec-x"},
                                                    "spec": {"serviceAccountName": used}}
    stale = kube.create(accounts.build_account("media", {"x": "1"}))[0]["metadata"]["name"]
    with ThreadPoolExecutor(max_workers=2) as background:
        pool = accounts.AccountPool(kube, size=3, annotations={}, submit=background.submit)
        assert pool.take("media") is None
        wait_until(lambda: pool.ready("media") == 3, "the pool filled")
        assert ("ServiceAccount", "media", stale) not in kube.objects  # other annotations: deleted
        taken = pool.take("media")
        wait_until(lambda: pool.ready("media") == 3, "the pool refilled")
        assert taken != used and ("ServiceAccount", "media", taken) in kube.objects
        assert taken not in pool._free["media"]
        pool.give_back("media", taken)
        assert taken in pool._free["media"]
        pool.forget("media")
        assert pool.ready("media") == 0 and pool.take("media") is None  # read again
        wait_until(lambda: pool.ready("media") == 3, "the pool read again")
        assert used not in pool._free["media"]
        wait_until(lambda: not any(pool._making.values()), "the pool's creates answered")


def test_with_an_account_made_ahead_the_pod_is_created_in_the_first_round_trip(started):
    """Role and pod beside the Lease, then the RoleBinding naming the account and the account's claim; the
    session's own account is not created; the claimed account is the session's and out of the pool."""
    c, kube = started, started.kube
    create.start(c, kube.add_session("a"), rooms=rooms_index(kube))
    ours = [kind for kind, name in kube.requests if not accounts.pooled(name)]  # not the pool's refill
    assert set(ours[:3]) == {"Lease", "Role", "Pod"} and ours[3:] == ["RoleBinding"]
    pod = kube.objects[("Pod", "media", "reel-rec-a")]
    account = pod["spec"]["serviceAccountName"]
    assert accounts.pooled(account) and kube.patched == [account]
    assert ("ServiceAccount", "media", "reel-rec-a") not in kube.objects
    binding = kube.objects[("RoleBinding", "media", "reel-rec-a")]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": "media"}]
    meta = account_of(kube, account)["metadata"]
    assert [r["uid"] for r in meta["ownerReferences"]] == ["uid-a"]  # the session's alone, no longer the role's
    free = account_of(kube, c.accounts._free["media"][0])["metadata"]
    assert [r["kind"] for r in free["ownerReferences"]] == ["ClusterRole"]
    assert accounts.LABEL_POOL not in meta["labels"] and meta["labels"][names.LABEL_SESSION] == "a"
    assert account not in c.accounts._free["media"]
    assert kube.sessions[("media", "a")]["status"]["phase"] == "Starting"
    create.start(c, kube.get_session("media", "a"), rooms=rooms_index(kube))  # retried: nothing new
    assert kube.patched == [account]


def test_a_race_lost_at_the_lease_deletes_the_pod_at_once_and_never_gives_its_account_to_another(started):
    c, kube = started, started.kube
    create.start(c, kube.add_session("a"), rooms=rooms_index(kube))
    kube.deleted_pods.clear()
    create.start(c, kube.add_session("b"), rooms={})  # the index has not seen a yet: the Lease shows it
    assert kube.sessions[("media", "b")]["status"]["stopReason"] == "AlreadyRecording"
    assert kube.deleted_pods == [("reel-rec-b", 0)] and ("Role", "reel-rec-b") in kube.deleted
    assert not [k for k in kube.objects if k[2] == "reel-rec-b"]
    assert ("RoleBinding", "reel-rec-b") not in kube.requests
    b_account = kube.pod_accounts[-1]
    assert accounts.pooled(b_account) and b_account not in c.accounts._free["media"]
    assert len(kube.patched) == 1  # only a's account was claimed


def test_an_earlier_attempts_pod_keeps_its_account_and_the_taken_one_goes_back(started):
    """The pod exists with the session's own account (an earlier attempt without the pool): the account taken
    now is given back, the RoleBinding names the pod's account."""
    c, kube = started, started.kube
    body = kube.add_session("a")
    own = create.rbac.build_service_account(common.parse(body))
    kube.create(own)
    pod = create.podspec.build_pod(common.parse(body), c.settings)
    kube.create(pod)
    create.start(c, body, rooms=rooms_index(kube))
    wait_until(lambda: not any(c.accounts._making.values()), "the refill answered")
    made = {name for kind, _, name in kube.objects if kind == "ServiceAccount" and accounts.pooled(name)}
    assert set(c.accounts._free["media"]) == made  # none used: the taken one is back
    assert kube.objects[("RoleBinding", "media", "reel-rec-a")]["subjects"][0]["name"] == "reel-rec-a"
    assert kube.patched == [] and kube.sessions[("media", "a")]["status"]["phase"] == "Starting"


def test_without_an_account_ready_a_pod_made_ahead_by_a_failed_attempt_is_bound_to_its_account(started):
    """An attempt created the pod with a pooled account and then failed (its pool forgotten); the next attempt
    finds no account ready and goes the old way: its RoleBinding is made again for the pod's account, claimed."""
    c, kube = started, started.kube
    body = kube.add_session("a")
    taken = c.accounts.take("media")
    kube.create(create.podspec.as_account(create.podspec.build_pod(common.parse(body), c.settings), taken))
    c.accounts.forget("media")
    c.accounts.take = lambda namespace: None  # nothing ready this time
    create.start(c, body, rooms=rooms_index(kube))
    binding = kube.objects[("RoleBinding", "media", "reel-rec-a")]
    assert binding["subjects"][0]["name"] == taken and kube.patched == [taken]
    assert [r["uid"] for r in account_of(kube, taken)["metadata"]["ownerReferences"]] == ["uid-a"]
    assert kube.sessions[("media", "a")]["status"]["phase"] == "Starting"


def test_a_replacement_pod_runs_as_the_account_the_session_claimed(started):
    c, kube = started, started.kube
    create.start(c, kube.add_session("a"), rooms=rooms_index(kube))
    account = kube.objects[("Pod", "media", "reel-rec-a")]["spec"]["serviceAccountName"]
    del kube.objects[("Pod", "media", "reel-rec-a")]  # the recorder was lost, its pod is gone
    session = kube.sessions[("media", "a")]
    session["status"].update({"phase": "Recording", "restarts": 1})
    create.replace(c, kube.get_session("media", "a"))
    pod = kube.objects[("Pod", "media", "reel-rec-a")]
    assert pod["spec"]["serviceAccountName"] == account
    assert ("ServiceAccount", "media", "reel-rec-a") not in kube.objects


def test_a_pod_refused_its_account_makes_the_pool_read_the_namespace_again(started):
    c, kube = started, started.kube
    real = kube.create

    def refuse_pods(body):
        if body["kind"] == "Pod":
            raise RuntimeError("pods \"reel-rec-a\" is forbidden: error looking up service account")
        return real(body)
    kube.create = refuse_pods
    with pytest.raises(RuntimeError):
        create.start(c, kube.add_session("a"), rooms=rooms_index(kube))
    assert c.accounts.ready("media") == 0 and "media" not in c.accounts._free


def test_the_account_pool_settings():
    assert Settings.from_env({}).account_pool == 16 and Settings.from_env({}).account_owner == ""
    assert Settings.from_env({"REEL_ACCOUNT_POOL": "0"}).account_pool == 0
    assert Settings.from_env({"REEL_ACCOUNT_OWNER": "reel-operator-x"}).account_owner == "reel-operator-x"


def test_no_pod_stays_while_an_earlier_sessions_identity_is_collected(started):
    """The Role found is an earlier session's of the same name (its garbage collection under way): the pod made in
    the first round is deleted at once, its account never reused; kopf's retries take no account made ahead and
    create no pod until that identity is gone."""
    c, kube = started, started.kube
    body = kube.add_session("a")
    old = create.rbac.build_role(common.parse(body))
    old["metadata"]["ownerReferences"] = [{**old["metadata"]["ownerReferences"][0], "uid": "uid-of-the-old-a"}]
    kube.create(old)
    with pytest.raises(kopf.TemporaryError, match="earlier session"):
        create.start(c, body, rooms=rooms_index(kube))
    assert kube.deleted_pods == [("reel-rec-a", 0)] and ("Pod", "media", "reel-rec-a") not in kube.objects
    assert kube.pod_accounts[-1] not in c.accounts._free["media"]
    pods_before = len(kube.pod_accounts)
    with pytest.raises(kopf.TemporaryError, match="earlier session"):
        create.start(c, body, retry=1, rooms=rooms_index(kube))
    assert len(kube.pod_accounts) == pods_before and ("RoleBinding", "media", "reel-rec-a") not in kube.objects
    del kube.objects[("Role", "media", "reel-rec-a")]  # collected
    create.start(c, body, retry=2, rooms=rooms_index(kube))
    assert kube.objects[("Pod", "media", "reel-rec-a")]["spec"]["serviceAccountName"] == "reel-rec-a"
    assert kube.sessions[("media", "a")]["status"]["phase"] == "Starting"


def test_a_pool_whose_threads_are_shut_down_takes_nothing_and_raises_nothing():
    background = ThreadPoolExecutor(max_workers=1)
    background.shutdown()
    pool = accounts.AccountPool(OrderedKube(), size=2, annotations={}, submit=background.submit)
    assert pool.take("media") is None and pool.take("media") is None and not pool._making.get("media")


def gone_event(kube, account: str, name: str = "a") -> dict:
    """The DELETED event of the pod the start made ahead and removed again (as the watch delivers it)."""
    pod = create.podspec.as_account(create.podspec.build_pod(common.parse(kube.get_session("media", name)),
                                                             Settings()), account)
    return {**pod, "metadata": {**pod["metadata"], "uid": "uid-pod"}}


def test_the_pod_a_lost_race_removed_is_no_interruption(started):
    c, kube = started, started.kube
    create.start(c, kube.add_session("a"), rooms=rooms_index(kube))
    b = kube.add_session("b")
    kube.sessions[("media", "b")]["metadata"]["uid"] = "uid-b"
    create.start(c, b, rooms={})  # lost at the Lease: its pod deleted at once
    before = dict(kube.sessions[("media", "b")]["status"])
    create.pods.observe(c, gone_event(kube, kube.pod_accounts[-1], "b"), gone=True)
    assert kube.sessions[("media", "b")]["status"] == before  # Failed / AlreadyRecording, nothing more
    # and had the pod's deletion come before the Failed write: the session, not started, is left to the start
    kube.sessions[("media", "b")].pop("status")
    create.pods.observe(c, gone_event(kube, kube.pod_accounts[-1], "b"), gone=True)
    assert not kube.sessions[("media", "b")].get("status")


def test_a_pod_gone_after_starting_is_still_an_interruption(started):
    c, kube = started, started.kube
    create.start(c, kube.add_session("a"), rooms=rooms_index(kube))
    account = kube.objects[("Pod", "media", "reel-rec-a")]["spec"]["serviceAccountName"]
    pod = kube.objects.pop(("Pod", "media", "reel-rec-a"))
    create.pods.observe(c, pod, gone=True)
    assert kube.sessions[("media", "a")]["status"]["interruption"]["reason"] == "PodDeleted", account


def test_the_free_accounts_are_owned_by_the_cluster_role_the_chart_names():
    from reel_operator import main

    class Roles:
        def __init__(self, role=None, error=None):
            self.role, self.error = role, error

        def get_cluster_role(self, name):
            if self.error:
                raise self.error
            return self.role
    role = {"metadata": {"name": "reel-operator-reel-system", "uid": "role-uid"}}
    named = Settings(account_owner="reel-operator-reel-system")
    assert main.account_owner(Roles(role), named) == accounts.owner_of(role)
    assert main.account_owner(Roles(role), Settings()) is None  # not named (chart rbac.create false)
    assert main.account_owner(Roles(None), named) is None
    assert main.account_owner(Roles(error=RuntimeError("403 Forbidden")), named) is None


def test_kopfs_create_handler_counts_the_session_as_starting_while_its_pod_is_made(started):
    """The pod made ahead exists a round trip before the Starting write: its events meanwhile (kwok or a kubelet
    runs it) are this start's news, answered without a read (pods.quiet), as for the early start."""
    c, kube = started, started.kube
    body = kube.add_session("a")
    seen = []
    real = kube.create

    def create_and_look(obj):
        made = real(obj)
        if obj["kind"] == "Pod":
            running = {**made[0], "status": {"phase": "Running", "containerStatuses": [
                {"name": "recorder", "state": {"running": {"startedAt": "2026-12-02T10:00:00Z"}}}]}}
            hint = create.podstate.session_hint(kube.get_session("media", "a"))
            seen.append(create.pods.quiet(running, hint=hint, ctx=c))
        return made
    kube.create = create_and_look
    registered = create.register_early(c, body["metadata"]["uid"])
    create.start(c, body, rooms=rooms_index(kube), registered=registered)
    assert seen == [True] and registered.done() and "uid-a" not in c.starting and "uid-a" in c.started


# -- the rest of a start in a pool of its own (create._then, Context.finish) -------------------------------------

class HeldPool:
    """Context.finish that holds what is submitted until ``run()``: the rest of a start, seen before and after."""

    def __init__(self):
        self.held = []

    def submit(self, fn, *args):
        future = Future()
        self.held.append((future, fn, args))
        return future

    def run(self):
        held, self.held = self.held, []
        for future, fn, args in held:
            try:
                future.set_result(fn(*args))
            except BaseException as err:
                future.set_exception(err)


def test_the_handler_thread_is_free_once_the_pod_exists_and_the_rest_of_the_start_runs_in_its_own_pool(started):
    """kopf's create handler: the thread returns with the pod created (beside the Lease and the Role) and the label
    handed back; the account's binding and claim and the Starting write run in ``ctx.finish``; the session counts
    as starting until they have (its pod's events meanwhile are this start's: pods.quiet)."""
    c, kube = started, started.kube
    c.finish = HeldPool()
    body, labels = kube.add_session("a"), {}
    registered = create.register_early(c, "uid-a")
    rest = create.start(c, body, rooms=rooms_index(kube), labels=labels, registered=registered)
    ours = [kind for kind, name in kube.requests if not accounts.pooled(name)]
    assert sorted(ours) == ["Lease", "Pod", "Role"] and kube.patched == []
    assert labels == {names.LABEL_ROOM_KEY: names.room_key(common.parse(body))}
    assert "status" not in kube.sessions[("media", "a")] or not kube.sessions[("media", "a")]["status"].get("phase")
    assert not rest.done() and not registered.done() and "uid-a" in c.starting and "uid-a" not in c.started
    c.finish.run()
    assert rest.done() and rest.exception() is None and registered.done()
    account = kube.objects[("Pod", "media", "reel-rec-a")]["spec"]["serviceAccountName"]
    assert kube.patched == [account] and ("RoleBinding", "media", "reel-rec-a") in kube.objects
    assert kube.sessions[("media", "a")]["status"]["phase"] == "Starting"
    assert "uid-a" not in c.starting and "uid-a" in c.started


def test_an_error_in_the_rest_of_a_start_reaches_kopfs_retries_and_ends_the_start(started):
    """The claimed account vanished before its claim: the rest raises through its future (kopf retries the create
    handler, which awaits it), and the session no longer counts as starting."""
    c, kube = started, started.kube
    c.finish = HeldPool()
    kube.patch_service_account = lambda ns, name, patch: None  # the account is gone
    registered = create.register_early(c, "uid-a")
    rest = create.start(c, kube.add_session("a"), rooms=rooms_index(kube), labels={}, registered=registered)
    c.finish.run()
    assert isinstance(rest.exception(), kopf.TemporaryError) and "is gone" in str(rest.exception())
    assert registered.done() and "uid-a" not in c.starting and "uid-a" not in c.started


def test_the_early_start_ends_when_its_rest_has_run(started):
    """create.start_early (not awaited by kopf): kopf's create handler awaits its registration, which ends after
    the rest; a rest that failed leaves the start to the create handler."""
    c, kube = started, started.kube
    c.finish = HeldPool()
    registered = create.register_early(c, "uid-a")
    create.start_early(c, kube.add_session("a"), rooms=rooms_index(kube), registered=registered)
    assert ("Pod", "media", "reel-rec-a") in kube.objects and not registered.done()
    c.finish.run()
    assert registered.done() and "uid-a" in c.started
    assert kube.sessions[("media", "a")]["status"]["phase"] == "Starting"

    kube.patch_service_account = lambda ns, name, patch: None
    registered = create.register_early(c, "uid-b")
    create.start_early(c, kube.add_session("b", room=2), rooms=rooms_index(kube), registered=registered)
    c.finish.run()
    assert registered.done() and "uid-b" not in c.started and "uid-b" not in c.starting


def test_without_an_account_made_ahead_the_pod_is_still_made_in_the_handler_thread(started):
    """A retry takes no account made ahead: the session's own identity, then its pod, both before the thread is
    free; only the Starting write is left to the pool."""
    c, kube = started, started.kube
    c.finish = HeldPool()
    rest = create.start(c, kube.add_session("a"), rooms=rooms_index(kube), labels={}, retry=1)
    assert {"ServiceAccount", "RoleBinding", "Pod"} <= {kind for kind, _ in kube.requests}
    assert not rest.done()
    c.finish.run()
    assert kube.sessions[("media", "a")]["status"]["phase"] == "Starting"


def test_kopfs_create_handler_awaits_the_rest_of_the_start_on_the_event_loop(started, monkeypatch):
    """main.on_create: the thread's answer is the rest's future; the handler ends (and kopf's patch carries the
    label) once that has run, holding no thread meanwhile."""
    import asyncio
    import types

    from reel_operator import main

    c, kube = started, started.kube
    c.finish = HeldPool()

    async def in_thread(memo, fn, *args, **kwargs):
        return fn(*args, **kwargs)
    monkeypatch.setattr(main, "in_thread", in_thread)
    body = kube.add_session("a")
    body["metadata"]["finalizers"] = [main.FINALIZER]
    patch = kopf.Patch()

    async def scenario():
        handler = asyncio.ensure_future(main.on_create(body=body, memo=types.SimpleNamespace(reel=c), retry=0,
                                                       rooms=rooms_index(kube), patch=patch, logger=None))
        await asyncio.sleep(0.05)
        assert not handler.done() and ("Pod", "media", "reel-rec-a") in kube.objects
        c.finish.run()
        await asyncio.wait_for(handler, 5)
    asyncio.run(scenario())
    assert patch["metadata"]["labels"] == {names.LABEL_ROOM_KEY: names.room_key(common.parse(body))}
    assert kube.sessions[("media", "a")]["status"]["phase"] == "Starting" and "uid-a" in c.started
