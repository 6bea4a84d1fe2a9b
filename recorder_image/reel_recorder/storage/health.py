"""Store health: each store's failure streak and backoff, probing, fatal errors and the failover decision.

Owned by the :class:`~.uploader.Uploader`; every method is called with the uploader's lock held (by its
workers and scheduler, ``preflight()`` and ``close()``). No I/O and no lock of its own. Rules it keeps:

- Failures are retried with backoff (``retry_base``, doubling, at most ``retry_max``); a store that is failing
  gets one request at a time (a probe), not one per worker. Its first success ends the streak.
- An ``object`` error (this object cannot be stored) says nothing about the store: it is not a failure of it.
- A configuration error (wrong credentials, a missing bucket) makes a store *fatal*. It keeps being probed, and
  a success clears it. When the primary is fatal and so is the backup (or there is none), no store is usable:
  :attr:`Health.fatal` is set for good, the workers stop and the session fails.
- Failover: when the primary has kept failing for ``failover_after`` seconds (at once when it is fatal) and the
  backup is usable, new segments go to the backup. The primary keeps being probed; when it answers again, new
  segments go back to it (and the uploader backfills it).
- A write-once object that found a different object at its key (``ObjectExistsError``: another recording writes
  under this prefix) is not a failure of the store, but it ends the session: :meth:`Health.collided` sets
  :attr:`Health.fatal` for good (the workers stop, segments not stored stay in the spool), the error naming the key.
- Failures during ``close()``'s final phase are also counted apart (``final_failures``): a store that failed twice
  then and is still failing is :attr:`StoreHealth.down_at_close`: documents.py gives up its final versions there,
  and the integrity check does not ask it (its objects are counted unverified).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from .base import Store
from .errors import StoreError
from .ledger import BACKUP, PRIMARY

log = logging.getLogger("reel.storage")


class StoreHealth:
    """Failure streak and backoff of one store (``store`` is None for a backup that is not configured)."""

    def __init__(self, store: Store | None) -> None:
        self.store = store
        self.failing_since: float | None = None
        self.failures = 0
        self.next_try = 0.0
        self.inflight = 0
        self.fatal: StoreError | None = None
        self.final_failures = 0  # failures during close()'s final phase

    @property
    def healthy(self) -> bool:
        return self.failing_since is None and self.fatal is None

    @property
    def down_at_close(self) -> bool:
        """Failed twice during close()'s final phase and still failing (the backfill deadline has passed by then):
        it is down, and close() spends no more of its budget on it."""
        return not self.healthy and self.final_failures >= 2


class Health:
    """Both stores' health and the decisions made from it. Caller holds the uploader's lock for every method."""

    def __init__(self, primary: Store, backup: Store | None, *, failover_after: float, retry_base: float,
                 retry_max: float, clock: Callable[[], float]) -> None:
        self.stores = {PRIMARY: StoreHealth(primary), BACKUP: StoreHealth(backup)}
        self.failover_after = failover_after
        self.retry_base = retry_base
        self.retry_max = retry_max
        self._clock = clock
        self.fatal: StoreError | None = None  # no store is usable (set for good)

    def __getitem__(self, role: str) -> StoreHealth:
        return self.stores[role]

    @property
    def has_backup(self) -> bool:
        return self.stores[BACKUP].store is not None

    def backoff(self, n: int) -> float:
        """Seconds to wait after the ``n``-th failure in a row (of a store, or of one object)."""
        return min(self.retry_max, self.retry_base * (2 ** max(0, n - 1)))

    def failed_over(self, now: float) -> bool:
        """Whether new segments go to the backup."""
        if not self.has_backup or self.stores[BACKUP].fatal is not None:
            return False
        p = self.stores[PRIMARY]
        if p.fatal is not None:
            return True
        return p.failing_since is not None and now - p.failing_since >= self.failover_after

    def can_try(self, role: str, now: float) -> bool:
        """Whether a request to this store may start now (one at a time while it is failing)."""
        h = self.stores[role]
        if h.store is None:
            return False
        if now < h.next_try:
            return False
        if h.fatal is not None or h.failing_since is not None:
            return h.inflight == 0
        return True

    def next_try_after(self, now: float) -> float:
        """The earliest time after ``now`` a store in backoff may be tried again (inf when none waits)."""
        return min((h.next_try for h in self.stores.values() if h.store is not None and h.next_try > now),
                   default=float("inf"))

    def begin(self, *roles: str) -> None:
        """A request to these stores starts (a backfill reads the backup and writes the primary)."""
        for role in roles:
            self.stores[role].inflight += 1

    def end(self, *roles: str) -> None:
        for role in roles:
            self.stores[role].inflight -= 1

    def record_success(self, role: str) -> None:
        h = self.stores[role]
        if h.failing_since is not None or h.fatal is not None:
            log.warning("%s answers again", h.store.label)
        h.failing_since = None
        h.failures = 0
        h.next_try = 0.0
        h.fatal = None

    def record_failure(self, role: str, err: StoreError, started: float, *, final: bool) -> bool:
        """A request to ``role``'s store, started at ``started``, failed (``final``: during close()'s final phase).
        True when this left no usable store (``fatal`` was just set)."""
        if err.kind == "object":
            return False  # the store is fine; this object is not
        h = self.stores[role]
        if h.failing_since is None:
            h.failing_since = started
            log.warning("%s failing: %s", h.store.label, err)
        h.failures += 1
        if final:
            h.final_failures += 1
        h.next_try = self._clock() + self.backoff(h.failures)
        if err.fatal and h.fatal is None:
            h.fatal = err
            log.error("%s unusable: %s", h.store.label, err)
            return self.update_fatal()
        return False

    def update_fatal(self) -> bool:
        """Set ``fatal`` when every configured store is fatal; True when it was just set."""
        p, b = self.stores[PRIMARY], self.stores[BACKUP]
        if p.fatal is None or (self.has_backup and b.fatal is None) or self.fatal is not None:
            return False
        msg = str(p.fatal)
        if self.has_backup:
            msg += f"; and {b.fatal}"
        self.fatal = StoreError("", msg, kind="config", code=p.fatal.code)
        log.error("no usable store: %s", msg)
        return True

    def collided(self, err: StoreError) -> None:
        """A write-once object found a different object at its key (module docstring): no store is used any more."""
        if self.fatal is None:
            self.fatal = err
            log.error("stopping the uploads: %s", err)
