"""Uploader: moves closed segments, playlists and the manifest from the local spool to the stores.

The recorder's threads call the public methods; none blocks them (each only takes the lock briefly). The
uploader's own worker threads do the I/O, and a monitor thread reports progress. One lock (``_lock``, with its
condition ``_cond``) guards all of the uploader's state and is never held during a store request or a render.
The pieces it owns are plain objects whose methods run under that lock, each in the module named for its duty
(their docstrings state the rules each enforces):

- ledger.py: the segments, the pending and backfill queues, progress and the final result;
- health.py: each store's failures, backoff and probing, fatal errors, when to fail over;
- documents.py: the playlists and the manifest per store, their final versions at close;
- transfers.py: what a worker does with one task (store a segment, backfill one, upload a document).

This module holds the public API, the scheduler (``_pick_locked``), the worker threads, the progress monitor and
the three phases of ``close()``. Rules it keeps:

- A segment is uploaded as soon as it is closed, in closing order, to the primary, or to the backup while failed
  over (health.py decides). When the backup fails too, a segment probes the primary (unless backfill waits).
  While the primary is being probed and segments are pending, the probe is a segment, not a document.
- Everything that is only in the backup is copied into the primary (backfill) when both stores take requests,
  while recording and after ``close()`` up to ``backfill_deadline`` seconds.
- ``close(timeout)``: 1. wait until every segment is stored somewhere (or refused); 2. backfill, up to the
  backfill deadline, leaving a reserve of the budget for 3.; 3. the final playlists and manifest; 4. integrity:
  every stored segment and MP4 is checked in the store it is in (integrity.py: size and SHA-256, one HEAD each on
  S3), except in a store down at close (health.py), whose objects count as unverified; a mismatch makes the
  result ``failed`` with reason ``IntegrityMismatch``. At most ``timeout`` seconds in
  all (4. gets at least ``INTEGRITY_MIN_SECONDS``); every phase ends at once when no store is usable.
- ``on_progress`` is called from the monitor thread when progress changed, every ``progress_interval`` seconds
  even without a change, until ``close()`` stops the monitor after its phase 3, and once more at the end of
  ``close()`` (after 4.); an exception in it is logged, not raised.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from reel_api.vocabulary import FailureReason

from .base import Store
from .documents import Documents
from .errors import OBJECT_EXISTS, StoreError
from .health import Health
from .integrity import Expected, mismatch_message, verify_stored
from .ledger import BACKUP, PRIMARY, Ledger, UploadProgress, UploadResult
from .transfers import Transfers

__all__ = ["UploadProgress", "UploadResult", "Uploader"]

log = logging.getLogger("reel.storage")

#: The integrity check at the end of close() gets at least this long, whatever is left of the timeout.
INTEGRITY_MIN_SECONDS = 20.0


class Uploader:
    """The facade the catalog and the recorder talk to (see the module docstring)."""

    def __init__(
        self,
        primary: Store,
        backup: Store | None = None,
        *,
        failover_after: float = 30.0,
        backfill_deadline: float = 300.0,
        progress_interval: float = 10.0,
        on_progress: Callable[[UploadProgress], None] | None = None,
        manifest_interval: float = 30.0,
        workers: int = 2,
        retry_base: float = 0.25,
        retry_max: float = 5.0,
        delete_spool: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if primary is None:
            raise ValueError("a primary store is required")
        self.primary = primary
        self.backup = backup
        self.backfill_deadline = backfill_deadline
        self.progress_interval = progress_interval
        self.on_progress = on_progress
        self._clock = clock
        self._nworkers = max(1, workers)

        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._ledger = Ledger()
        self._health = Health(primary, backup, failover_after=failover_after, retry_base=retry_base,
                              retry_max=retry_max, clock=clock)
        self._docs = Documents((PRIMARY, BACKUP) if backup is not None else (PRIMARY,),
                               manifest_interval=manifest_interval)
        self._transfers = Transfers(self._cond, self._ledger, self._health, self._docs, clock=clock,
                                    delete_spool=delete_spool, stopped=lambda: self._stop)
        self._closing = False          # close() called: no more segments
        self._backfill_until: float | None = None
        self._stop = False             # close() is done with the workers
        self._changed = False          # for the monitor
        self._threads: list[threading.Thread] = []
        self._started = False
        self._unchecked: set[str] = set()  # stores preflight() found failing
        self.result: UploadResult | None = None  # close()'s result, once it returned
        # Timings, for the benchmark and logs: key -> seconds from segment_closed() to stored.
        self.latencies: dict[str, float] = self._ledger.latencies

    # ----------------------------------------------------------------------------------------------------
    # Public API (recorder threads)
    # ----------------------------------------------------------------------------------------------------

    @property
    def last_object_stored_at(self) -> float | None:
        """When an object (segment or document) was last stored, on the uploader's clock (for the benchmark)."""
        return self._ledger.last_object_stored_at

    @property
    def fatal_error(self) -> StoreError | None:
        """Set when no store can be used (wrong credentials / missing bucket on every configured store)."""
        return self._health.fatal

    def preflight(self) -> list[StoreError]:
        """Check the stores synchronously before recording (bounded by the stores' timeouts).

        Raises the primary's StoreError when no store is usable because of configuration errors; returns
        the other problems found (e.g. an unreachable primary with a working backup, a broken backup) so the
        caller can log them.
        """
        problems: list[StoreError] = []
        for role in (PRIMARY, BACKUP):
            store = self._health[role].store
            if store is None:
                continue
            try:
                store.check()
            except StoreError as e:
                self._unchecked.add(role)  # claim() does not wait for it
                problems.append(e)
                if e.fatal:
                    with self._lock:
                        self._health[role].fatal = e
        with self._lock:
            if self._health.update_fatal():
                self._ledger.last_error = str(self._health.fatal)
            fatal = self._health.fatal
        if fatal is not None:
            raise fatal
        return problems

    def claim(self, key: str, data: bytes) -> str | None:
        """Before recording: create ``key`` (a new recording's ``manifest.json``, ``data`` its first version) in the
        primary only if no object is there (``put_bytes_once``: a conditional write where the store has them), so
        two recordings cannot both take one prefix. Returns the label of a store that already holds an object at
        ``key`` (the backup is looked at first, one HEAD; the prefix is taken: nothing was written), else None. A
        store that cannot answer now (or that ``preflight()`` found failing) is skipped, logged: the uploads would
        find a collision later (ObjectExists)."""
        if self.backup is not None and BACKUP not in self._unchecked:
            try:
                if self.backup.exists(key):
                    return self.backup.label
            except StoreError as err:
                log.warning("cannot tell whether %r is taken in the backup: %s", key, err)
        if PRIMARY in self._unchecked:
            return None
        try:
            self.primary.put_bytes_once(key, data)
        except StoreError as err:
            if err.code == OBJECT_EXISTS:
                return self.primary.label
            log.warning("cannot claim %r in the primary: %s", key, err)
        return None

    def start(self) -> Uploader:
        with self._lock:
            if self._started:
                return self
            self._started = True
        for i in range(self._nworkers):
            t = threading.Thread(target=self._worker, name=f"reel-upload-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        t = threading.Thread(target=self._monitor, name="reel-upload-progress", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def segment_closed(self, key: str, path: Path, *, size: int, sha256: str) -> None:
        now = self._clock()
        with self._cond:
            if self._closing:
                raise RuntimeError("Uploader is closed: segment_closed() after close()")
            self._ledger.add(key, path, size=size, sha256=sha256, now=now)
            self._changed = True
            self._cond.notify_all()

    def adopt_stored(self, key: str, *, size: int, sha256: str, in_primary: bool, in_backup: bool) -> None:
        """A segment an earlier run of this recording stored (resume): playlists may list it at once, progress
        counts it, a copy only in the backup is backfilled."""
        with self._cond:
            self._ledger.adopt(key, size=size, sha256=sha256, in_primary=in_primary, in_backup=in_backup,
                               now=self._clock())
            self._changed = True
            self._cond.notify_all()

    def read_segment(self, key: str) -> bytes:
        """A segment's bytes, from the spool while it is there, else from a store that holds it (the MP4 of a
        resumed recording is built from them). Any thread; blocks on the store. Raises StoreError when the
        segment is neither in the spool nor stored."""
        def where() -> tuple[Path | None, list[str]]:
            with self._lock:
                seg = self._ledger.segments.get(key)
                if seg is None:
                    return None, []
                return (None if seg.spool_deleted else seg.path,
                        [r for r, held in ((PRIMARY, seg.in_primary), (BACKUP, seg.in_backup)) if held])

        local, roles = where()
        if local is not None:
            try:
                return local.read_bytes()
            except FileNotFoundError:  # stored (flags set first, under the lock), then deleted from the spool
                _, roles = where()
        last: StoreError | None = None
        for role in roles:
            try:
                return self._health[role].store.get_bytes(key)
            except StoreError as err:
                last = err
        raise last or StoreError("uploader", f"segment {key!r} is neither in the spool nor stored", kind="object")

    def playlist_updated(self, key: str, render: Callable[[Callable[[str], bool]], str]) -> None:
        with self._cond:
            self._docs.playlist_updated(key, render)
            self._cond.notify_all()

    def manifest_updated(self, key: str, render: Callable[[Callable[[str], str | None]], bytes]) -> None:
        with self._cond:
            self._docs.manifest_updated(key, render)
            self._cond.notify_all()

    def progress(self) -> UploadProgress:
        with self._lock:
            return self._ledger.progress()

    def close(self, timeout: float) -> UploadResult:
        """Finish: wait for pending segments, backfill (up to backfill_deadline), upload final playlists and
        manifest; at most ``timeout`` seconds in all. Returns what ended where."""
        start = self._clock()
        end = start + max(0.0, timeout)
        if not self._started:
            self.start()
        health, ledger, docs = self._health, self._ledger, self._docs
        # Backfill may use the budget, except a reserve for the final playlists and manifest: with the primary
        # down, they must still reach the backup before the time is up.
        reserve = min(60.0, max(5.0, 0.25 * timeout))
        with self._cond:
            self._closing = True
            self._backfill_until = start + min(self.backfill_deadline, max(0.0, timeout - reserve))
            self._cond.notify_all()
            # 1. every segment stored somewhere (or refused for good)
            self._wait_locked(lambda: health.fatal is not None or not ledger.pending, end)
            log.debug("close: pending segments done after %.2fs", self._clock() - start)
            # 2. backfill into the primary, while the primary answers, up to the backfill deadline
            if self.backup is not None:
                self._wait_locked(lambda: health.fatal is not None or not ledger.backfill,
                                  min(end, self._backfill_until))
                log.debug("close: backfill done after %.2fs", self._clock() - start)
            # 3. final playlists and manifest
            docs.begin_final(health, backed_up=ledger.backed_up)
            self._cond.notify_all()
            self._wait_locked(lambda: health.fatal is not None
                              or docs.final_done(health, backed_up=ledger.backed_up), end)
            log.debug("close: final documents done after %.2fs", self._clock() - start)
            self._stop = True
            self._cond.notify_all()
        # Idle workers exit at once; one blocked in a request to a store that is down is not waited for
        # (daemon threads; after _stop they change nothing the result depends on, and delete no spool file).
        join_until = min(end, self._clock() + 0.5)
        for t in self._threads:
            t.join(timeout=max(0.0, join_until - self._clock()))
        primary_label, backup_label = self.primary.label, self.backup.label if self.backup else None
        with self._lock:
            result = ledger.result(fatal=health.fatal, unwritten=docs.unwritten(), docs_stored=docs.all_final_stored(),
                                   primary_label=primary_label, backup_label=backup_label)
            # a store down at close is not asked again: its objects are counted unverified (store None)
            usable = {role: None if health[role].down_at_close else health[role].store for role in (PRIMARY, BACKUP)}
            stored = [(usable[PRIMARY if s.in_primary else BACKUP], Expected(s.key, s.size, s.sha256))
                      for s in ledger.segments.values() if s.stored]
        if result.ok:
            result = self._verify(result, stored, until=max(end, self._clock() + INTEGRITY_MIN_SECONDS))
        self.result = result
        self._emit(self.progress())
        for store in (self.primary, self.backup):
            if store is not None:
                with contextlib.suppress(Exception):
                    store.close()
        return result

    def _verify(self, result: UploadResult, stored: list, *, until: float) -> UploadResult:
        """close()'s 4th phase, without the lock (integrity.verify_stored)."""
        mismatches, unverified = verify_stored(stored, until=until, clock=self._clock)
        if not mismatches:
            return dataclasses.replace(result, unverified=unverified)
        return dataclasses.replace(result, status="failed", reason=FailureReason.INTEGRITY_MISMATCH,
                                   message=mismatch_message(mismatches, len(stored)),
                                   mismatched=tuple(m.key for m in mismatches), unverified=unverified)

    # ----------------------------------------------------------------------------------------------------
    # Scheduler and workers (all *_locked methods run with self._lock held)
    # ----------------------------------------------------------------------------------------------------

    def _wait_locked(self, done: Callable[[], bool], until: float) -> bool:
        while not done():
            remaining = until - self._clock()
            if remaining <= 0:
                return False
            self._cond.wait(timeout=min(remaining, 1.0))
        return True

    def _pick_locked(self, now: float):
        """The next task for a worker, ``((kind, segment or doc, store role), None)``, or ``(None, wake_at)``."""
        health, ledger = self._health, self._ledger
        if self._stop or health.fatal is not None:
            return None, None
        failed_over = health.failed_over(now)
        primary_ok = health.can_try(PRIMARY, now)
        primary_probe = primary_ok and not health[PRIMARY].healthy

        # 1. new segments: FIFO, the head waits for its store (the others would wait for the same store)
        seg = next((s for s in ledger.pending if not s.inflight), None)
        if seg is not None:
            if not failed_over:
                if primary_ok:
                    return ("segment", seg, PRIMARY), None
            elif health.can_try(BACKUP, now):
                return ("segment", seg, BACKUP), None
            elif primary_ok and not ledger.backfill:
                # the backup fails too: let this segment probe the primary
                return ("segment", seg, PRIMARY), None
        # 2. playlists and manifest
        due, wake = self._docs.due(now, backed_up=ledger.backed_up, health=health)
        for doc, role in due:
            if health.can_try(role, now) and not (role == PRIMARY and primary_probe and ledger.pending):
                return ("doc", doc, role), None
        # 3. backfill from the backup into the primary
        if ledger.backfill and primary_ok and health.can_try(BACKUP, now) and (
                self._backfill_until is None or now < self._backfill_until):
            for seg in ledger.backfill:
                if not seg.inflight and seg.not_before <= now:
                    return ("backfill", seg, PRIMARY), None
        return None, min(now + 1.0, wake, health.next_try_after(now))

    def _worker(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._stop or self._health.fatal is not None:
                        return
                    now = self._clock()
                    task, wake = self._pick_locked(now)
                    if task is not None:
                        break
                    self._cond.wait(timeout=max(0.01, min(1.0, wake - now)))
                kind, obj, role = task
                roles = (PRIMARY, BACKUP) if kind == "backfill" else (role,)  # a backfill reads the backup
                self._health.begin(*roles)
                self._set_inflight(kind, obj, role, True)
            try:
                if kind == "segment":
                    self._transfers.segment(obj, role)
                elif kind == "backfill":
                    self._transfers.backfill(obj)
                else:
                    self._transfers.document(obj, role)
            except Exception as e:  # a bug in a render callback or a store: never kill the worker
                log.exception("upload task %s %s failed unexpectedly", kind, getattr(obj, "key", obj))
                with self._cond:
                    self._ledger.last_error = f"internal error: {e!r}"
                    if kind == "doc":
                        self._docs.failed(obj, role, self._clock(), self._health)
            finally:
                with self._cond:
                    self._health.end(*roles)
                    self._set_inflight(kind, obj, role, False)
                    self._changed = True
                    self._cond.notify_all()

    @staticmethod
    def _set_inflight(kind: str, obj, role: str, value: bool) -> None:
        if kind == "doc":
            obj.inflight[role] = value
        else:
            obj.inflight = value

    # ----------------------------------------------------------------------------------------------------
    # Progress monitor
    # ----------------------------------------------------------------------------------------------------

    def _emit(self, p: UploadProgress) -> None:
        if self.on_progress is None:
            return
        try:
            self.on_progress(p)
        except Exception:
            log.exception("on_progress callback failed")

    def _monitor(self) -> None:
        last_emit = -1e18
        last: UploadProgress | None = None
        while True:
            with self._cond:
                if self._stop:
                    return
                now = self._clock()
                due = last_emit + self.progress_interval
                if not self._changed and now < due:
                    self._cond.wait(timeout=min(1.0, due - now))
                    continue
                self._changed = False
                p = self._ledger.progress()
            if p != last or self._clock() >= due:
                last_emit = self._clock()
                last = p
                self._emit(p)
