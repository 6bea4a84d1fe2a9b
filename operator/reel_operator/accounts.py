"""Recorder ServiceAccounts made ahead of the sessions that will use them: the account pool.

Why: the API server admits a pod only once its ServiceAccount exists, so a start that first creates the session's
own account waits two round trips before its pod exists (benchmarks/operator_scale.py: that second round trip was
most of the tail of apply -> pod). With an account made ahead, ``create.py`` creates the pod in the start's first
round trip, beside the room's Lease and the session's Role, and makes the account the session's in the second
(``claim``: owner reference and labels, beside the RoleBinding).

What holds the trust boundary: an account in the pool is bound to nothing (no RoleBinding names it), so it can do
nothing (owned by the chart's ClusterRole, ``REEL_ACCOUNT_OWNER``, they go with the release); a session's
RoleBinding names the one account its pod uses; an account is taken once and never given to
another session: once a pod was created with it, it is the session's (or, if the start then gave up, nobody's:
``forget`` drops it, it stays unbound). The pod's token is bound to the pod, so it dies with it.

Who does what: handler threads ``take`` (never waiting for the API: None when the namespace has no account ready,
the start then creates the session's own account the old way) and ``give_back`` an account that no pod was created
with; ``forget`` drops a namespace's accounts when a pod create with one of them failed (someone may have deleted
them: the next take reads them again). Reading a namespace's accounts (at the first take there: accounts left by an
earlier operator process are reused when no pod uses them) and creating new ones run in ``submit`` (the
``reel-accounts`` threads of main.py, apart from the starts' ``Context.io``); ``_lock`` guards the free lists and
the counts of accounts being made. Pure: ``build_account``, ``claim``.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable, Mapping
from typing import Any

from reel_api import RecordingSession

from .names import LABEL_MANAGED_BY, LABEL_NAME, LABEL_PART_OF, MANAGED_BY, labels, owner_reference, owner_session

log = logging.getLogger("reel.operator")

#: Label of an account in the pool (removed when a session claims it).
LABEL_POOL = "reel.dev/account-pool"
POOL_SELECTOR = f"{LABEL_POOL}=free,{LABEL_MANAGED_BY}={MANAGED_BY}"
#: Names of pooled accounts: never those of a session's objects (``reel-rec-<session>``).
ACCOUNT_PREFIX = "reel-acct-"


def build_account(namespace: str, annotations: Mapping[str, str] | None = None,
                  owner: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A free account: a fresh random name, the pool label, no session owner yet; ``annotations`` as for a
    session's own account (rbac.build_service_account); ``owner``: the reference to the chart's ClusterRole
    (``owner_of``), so that an uninstall leaves no free account behind. Pure but for the random name."""
    meta: dict[str, Any] = {
        "name": ACCOUNT_PREFIX + secrets.token_hex(5),
        "namespace": namespace,
        "labels": {LABEL_NAME: "reel-recorder", LABEL_PART_OF: "reel", LABEL_MANAGED_BY: MANAGED_BY,
                   LABEL_POOL: "free"},
    }
    if annotations:
        meta["annotations"] = dict(annotations)
    if owner:
        meta["ownerReferences"] = [dict(owner)]
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta, "automountServiceAccountToken": False}


def owner_of(cluster_role: Mapping[str, Any]) -> dict[str, Any]:
    """The owner reference of the free accounts to the chart's ClusterRole (not a controller, blocking nothing:
    the garbage collector deletes them once it is gone). Pure."""
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "name": cluster_role["metadata"]["name"], "uid": cluster_role["metadata"]["uid"]}


def claim(session: RecordingSession) -> dict[str, Any]:
    """The JSON merge patch that makes a pooled account the session's: owned by it alone (deleted with it, like
    its own account would be; no longer the ClusterRole's), labelled like its other objects, out of the pool.
    Pure."""
    return {"metadata": {"labels": {**labels(session), LABEL_POOL: None},
                         "ownerReferences": [owner_reference(session)]}}


def pooled(name: str) -> bool:
    return name.startswith(ACCOUNT_PREFIX)


def free_accounts(accounts: list[Mapping[str, Any]], pods: list[Mapping[str, Any]],
                  annotations: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """Of the pool-labelled ``accounts`` an earlier process left, -> (free, stale): free ones have no session
    owner, are used by none of ``pods`` (a pod created with an account before the process could claim it keeps it: its
    session's start adopts the pod and claims it) and carry ``annotations``; stale ones (other annotations,
    settings changed) are to be deleted. Pure."""
    used = {(p.get("spec") or {}).get("serviceAccountName") for p in pods}
    free, stale = [], []
    for account in accounts:
        meta = account["metadata"]
        if owner_session(account) or meta["name"] in used or meta.get("deletionTimestamp"):
            continue
        (free if dict(meta.get("annotations") or {}) == dict(annotations) else stale).append(meta["name"])
    return free, stale


class AccountPool:
    """Up to ``size`` free accounts per namespace where sessions start; refilled by one create per take."""

    def __init__(self, kube, *, size: int, annotations: Mapping[str, str], submit: Callable[..., Any],
                 owner: Mapping[str, Any] | None = None):
        self.kube, self.size, self.annotations, self.submit = kube, size, dict(annotations), submit
        self.owner = dict(owner) if owner else None
        self._lock = threading.Lock()
        self._free: dict[str, list[str]] = {}  # namespace -> free account names (only once read)
        self._making: dict[str, int] = {}  # namespace -> reads or creates under way

    def take(self, namespace: str) -> str | None:
        """A free account of ``namespace``, or None (none ready: the first take in a namespace starts reading it)."""
        with self._lock:
            free = self._free.get(namespace)
            if free is None:
                if not self._making.get(namespace):
                    self._start(self._read, namespace)
                return None
            name = free.pop() if free else None
            self._refill(namespace)
        return name

    def give_back(self, namespace: str, name: str) -> None:
        """An account taken but used by no pod (the session's pod existed already, with its own)."""
        with self._lock:
            free = self._free.get(namespace)
            if free is not None and name not in free:
                free.append(name)

    def forget(self, namespace: str) -> None:
        """Drop what is known of ``namespace``: a pod create with one of its accounts failed. Read again next time."""
        with self._lock:
            self._free.pop(namespace, None)

    def ready(self, namespace: str) -> int:
        with self._lock:
            return len(self._free.get(namespace) or ())

    # -- in ``submit`` ------------------------------------------------------------------------------------------
    def _refill(self, namespace: str) -> None:
        """Under _lock: a create for each account missing, counting those under way."""
        missing = self.size - len(self._free.get(namespace) or ()) - self._making.get(namespace, 0)
        for _ in range(max(0, missing)):
            self._start(self._make, namespace)

    def _start(self, work, namespace: str) -> None:
        """Under _lock: ``work`` in ``submit``, counted as under way (not once the operator shuts down)."""
        try:
            self.submit(work, namespace)
        except RuntimeError:  # the executor is shut down: the operator is stopping
            return
        self._making[namespace] = self._making.get(namespace, 0) + 1

    def _read(self, namespace: str) -> None:
        free: list[str] = []
        try:
            accounts = self.kube.list_service_accounts(namespace, POOL_SELECTOR)
            free, stale = free_accounts(accounts, self.kube.list_recorder_pods(namespace), self.annotations)
            for name in stale:
                self.kube.delete("ServiceAccount", namespace, name)
        except Exception as err:  # the namespace starts empty; the accounts made from now on fill it
            log.warning("cannot read the recorder accounts of namespace %s: %s", namespace, err)
        with self._lock:
            self._making[namespace] -= 1
            self._free[namespace] = free[: self.size]
            self._refill(namespace)

    def _make(self, namespace: str) -> None:
        name = None
        try:
            obj, _ = self.kube.create(build_account(namespace, self.annotations, self.owner))
            name = obj["metadata"]["name"]
        except Exception as err:
            log.info("cannot make a recorder account in namespace %s: %s", namespace, err)
        with self._lock:
            self._making[namespace] -= 1
            free = self._free.get(namespace)
            if name is not None and free is not None:
                free.append(name)
