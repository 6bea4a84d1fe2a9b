"""Uploader: moves closed segments, playlists and the manifest from the local spool to the stores.

Called from the recorder's threads; never blocks them (every public method only takes a short lock). Its own
worker threads do the I/O. Rules it keeps:

- A segment is uploaded to the primary as soon as it is closed. Failures are retried with backoff; a store
  that is failing gets one request at a time (a probe), not one per worker.
- When the primary has kept failing for ``failover_after`` seconds (at once on a configuration error such as
  wrong credentials or a missing bucket), segments go to the backup instead and the session is marked
  backed up. The primary keeps being probed; when it answers again, new segments go back to it and
  everything that is only in the backup is copied into it (backfill, checksum-verified), while recording and
  after ``close()`` up to ``backfill_deadline`` seconds.
- A spool file is deleted only once its segment is stored somewhere.
- After a segment is stored in a store, the playlists of that store are re-rendered and uploaded if they
  changed, so they list only stored segments. The ``is_stored`` predicate handed to a playlist's render is
  *prefix-closed* for the primary: once it answered False for one segment it answers False for every later
  segment of that render (render must ask about segments in playlist order), so a live playlist only grows at
  its end, as HLS EVENT playlists must. For the backup, which holds a sparse subset, it is plain membership.
- The manifest is uploaded at most every ``manifest_interval`` seconds while recording and once at close,
  to the primary and (when it holds segments) to the backup.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .base import Store
from .errors import StoreError
from .keys import content_type_for

log = logging.getLogger("reel.storage")

Location = Literal["primary", "backup", "mixed"]
ResultStatus = Literal["uploaded", "backed_up", "failed"]

PRIMARY = "primary"
BACKUP = "backup"


@dataclass(frozen=True)
class UploadProgress:
    segments: int = 0                 # segments closed by the recorder
    pending_segments: int = 0         # closed but not stored anywhere yet (includes failed ones)
    recorded_bytes: int = 0
    stored_bytes: int = 0             # bytes of segments stored somewhere
    progress: float = 1.0             # stored_bytes / recorded_bytes (1.0 when nothing recorded)
    location: Location = "primary"    # where the stored segments are
    backed_up: bool = False           # the backup store has been used during this session
    last_error: str = ""
    primary_segments: int = 0         # segments in the primary
    backup_only_segments: int = 0     # segments only in the backup (waiting for backfill)
    failed_segments: int = 0          # segments that cannot be stored (refused key, spool file gone)

    @property
    def percent(self) -> int:
        """Stored bytes as a whole percentage: 100 only when every recorded segment is stored; 0 before any
        segment was recorded."""
        if not self.recorded_bytes:
            return 0
        if self.pending_segments == 0 and self.stored_bytes >= self.recorded_bytes:
            return 100
        return min(99, int(self.stored_bytes * 100 // self.recorded_bytes))

    def as_status(self) -> dict:
        """RecordingSession status.upload (reel_api UploadStatus, camelCase; progress as a percentage;
        location absent until a segment is stored)."""
        status = {
            "segments": self.segments,
            "pendingSegments": self.pending_segments,
            "recordedBytes": self.recorded_bytes,
            "storedBytes": self.stored_bytes,
            "progress": self.percent,
        }
        if self.primary_segments or self.backup_only_segments:
            status["location"] = self.location
        return status


@dataclass(frozen=True)
class UploadResult:
    status: ResultStatus              # uploaded: all in primary; backed_up: all stored, some only in backup
    message: str
    progress: UploadProgress
    missing: tuple[str, ...] = ()     # segment keys stored nowhere (their spool files are kept)
    backup_only: tuple[str, ...] = ()  # segment keys only in the backup
    unwritten: tuple[str, ...] = ()   # playlists/manifest whose final version is not in the primary

    @property
    def ok(self) -> bool:
        return self.status != "failed"


@dataclass(eq=False)
class _Segment:
    key: str
    path: Path
    size: int
    sha256: str
    closed_at: float
    seq: int
    in_primary: bool = False
    in_backup: bool = False
    stored_at: float | None = None       # first time it was stored anywhere
    failed: StoreError | None = None     # cannot be stored (object error)
    inflight: bool = False
    not_before: float = 0.0
    attempts: int = 0
    spool_deleted: bool = False

    @property
    def stored(self) -> bool:
        return self.in_primary or self.in_backup


@dataclass(eq=False)
class _Doc:
    """A playlist or the manifest: re-rendered on demand, uploaded per store when its text changed."""

    key: str
    kind: Literal["playlist", "manifest"]
    render: Callable
    dirty: dict[str, bool] = field(default_factory=dict)          # store name -> needs a render
    uploaded: dict[str, bytes] = field(default_factory=dict)      # store name -> last uploaded content
    inflight: dict[str, bool] = field(default_factory=dict)
    final: dict[str, bool] = field(default_factory=dict)          # store name -> final version uploaded
    last_upload: dict[str, float] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    not_before: dict[str, float] = field(default_factory=dict)


class _Health:
    """Failure streak and backoff of one store."""

    def __init__(self, store: Store | None) -> None:
        self.store = store
        self.failing_since: float | None = None
        self.failures = 0
        self.next_try = 0.0
        self.inflight = 0
        self.fatal: StoreError | None = None
        self.last_error: StoreError | None = None
        self.used = False
        self.final_failures = 0  # failures during close()'s final phase

    @property
    def healthy(self) -> bool:
        return self.failing_since is None and self.fatal is None


class Uploader:
    FINAL_ATTEMPTS = 5  # attempts per store for the final version of a playlist/manifest at close()

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
        self.failover_after = failover_after
        self.backfill_deadline = backfill_deadline
        self.progress_interval = progress_interval
        self.on_progress = on_progress
        self.manifest_interval = manifest_interval
        self.retry_base = retry_base
        self.retry_max = retry_max
        self.delete_spool = delete_spool
        self._clock = clock
        self._nworkers = max(1, workers)

        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._segments: dict[str, _Segment] = {}
        self._pending: deque[_Segment] = deque()      # not stored anywhere, not failed
        self._backfill: deque[_Segment] = deque()     # only in backup
        self._docs: dict[str, _Doc] = {}
        self._manifest: _Doc | None = None
        self._health = {PRIMARY: _Health(primary), BACKUP: _Health(backup)}
        self._stores = {PRIMARY: primary, BACKUP: backup}
        self._key_to_playlists: dict[str, set[str]] = {}
        self._seq = 0
        self._recorded_bytes = 0
        # counts kept up to date on every change, so progress() is O(1) however long the recording
        self._n_primary = 0          # segments in the primary
        self._n_backup_only = 0      # segments only in the backup
        self._n_failed = 0           # segments refused for good, stored nowhere
        self._stored_bytes = 0
        self._last_error = ""
        self._fatal: StoreError | None = None
        self._backed_up = False
        self._closing = False          # close() called: no more segments
        self._final = False            # final playlists/manifest phase
        self._backfill_until: float | None = None
        self._stop = False
        self._changed = False
        self._threads: list[threading.Thread] = []
        self._started = False
        # Timings, for the benchmark and logs: key -> seconds from segment_closed() to stored.
        self.latencies: dict[str, float] = {}
        self.last_object_stored_at: float | None = None

    # ----------------------------------------------------------------------------------------------------
    # Public API (recorder threads)
    # ----------------------------------------------------------------------------------------------------

    @property
    def fatal_error(self) -> StoreError | None:
        """Set when no store can be used (wrong credentials / missing bucket on every configured store)."""
        return self._fatal

    def preflight(self) -> list[StoreError]:
        """Check the stores synchronously before recording (bounded by the stores' timeouts).

        Raises the primary's StoreError when no store is usable because of configuration errors; returns
        the other problems found (e.g. an unreachable primary with a working backup, a broken backup) so the
        caller can log them.
        """
        problems: list[StoreError] = []
        for role, store in self._stores.items():
            if store is None:
                continue
            try:
                store.check()
            except StoreError as e:
                problems.append(e)
                if e.fatal:
                    with self._lock:
                        self._health[role].fatal = e
        with self._lock:
            self._update_fatal()
            fatal = self._fatal
        if fatal is not None:
            raise fatal
        return problems

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
            if key in self._segments:
                raise ValueError(f"segment {key!r} was already handed to the uploader")
            self._seq += 1
            seg = _Segment(key=key, path=Path(path), size=int(size), sha256=sha256.lower(), closed_at=now,
                           seq=self._seq)
            self._segments[key] = seg
            self._pending.append(seg)
            self._recorded_bytes += seg.size
            self._changed = True
            self._cond.notify_all()

    def playlist_updated(self, key: str, render: Callable[[Callable[[str], bool]], str]) -> None:
        with self._cond:
            doc = self._docs.get(key)
            if doc is None:
                doc = self._docs[key] = _Doc(key=key, kind="playlist", render=render)
            doc.render = render
            for role in (PRIMARY, BACKUP):
                if self._stores[role] is not None:
                    doc.dirty[role] = True
            self._cond.notify_all()

    def manifest_updated(self, key: str, render: Callable[[Callable[[str], str | None]], bytes]) -> None:
        with self._cond:
            if self._manifest is None or self._manifest.key != key:
                self._manifest = _Doc(key=key, kind="manifest", render=render)
            self._manifest.render = render
            for role in (PRIMARY, BACKUP):
                if self._stores[role] is not None:
                    self._manifest.dirty[role] = True
            self._cond.notify_all()

    def progress(self) -> UploadProgress:
        with self._lock:
            return self._progress_locked()

    def location_of(self, key: str) -> str | None:
        seg = self._segments.get(key)
        if seg is None:
            return None
        if seg.in_primary:
            return PRIMARY
        if seg.in_backup:
            return BACKUP
        return None

    def is_stored(self, key: str, store: str = PRIMARY) -> bool:
        seg = self._segments.get(key)
        if seg is None:
            return False
        return seg.in_primary if store == PRIMARY else seg.in_backup

    def close(self, timeout: float) -> UploadResult:
        """Finish: wait for pending segments, backfill (up to backfill_deadline), upload final playlists and
        manifest; at most ``timeout`` seconds in all. Returns what ended where."""
        start = self._clock()
        end = start + max(0.0, timeout)
        if not self._started:
            self.start()
        # Backfill may use the budget, except a reserve for the final playlists and manifest: with the primary
        # down, they must still reach the backup before the time is up.
        reserve = min(60.0, max(5.0, 0.25 * timeout))
        with self._cond:
            self._closing = True
            self._backfill_until = start + min(self.backfill_deadline, max(0.0, timeout - reserve))
            self._cond.notify_all()
            # 1. every segment stored somewhere (or failed for good)
            self._wait_locked(lambda: self._fatal is not None or not self._pending, end)
            log.debug("close: pending segments done after %.2fs", self._clock() - start)
            # 2. backfill into the primary, while the primary answers, up to the backfill deadline
            if self.backup is not None:
                self._wait_locked(lambda: self._fatal is not None or not self._backfill,
                                  min(end, self._backfill_until))
                log.debug("close: backfill done after %.2fs", self._clock() - start)
            # 3. final playlists and manifest
            self._final = True
            for doc in self._all_docs():
                for role in self._doc_targets_locked(doc):
                    doc.dirty[role] = True
                    doc.attempts[role] = 0
                    doc.not_before[role] = 0.0
            self._cond.notify_all()
            self._wait_locked(lambda: self._fatal is not None or self._final_docs_done(), end)
            log.debug("close: final documents done after %.2fs", self._clock() - start)
            self._stop = True
            self._cond.notify_all()
        # Idle workers exit at once; one blocked in a request to a store that is down is not waited for
        # (daemon threads; after _stop they change nothing the result depends on, and delete no spool file).
        join_until = min(end, self._clock() + 0.5)
        for t in self._threads:
            t.join(timeout=max(0.0, join_until - self._clock()))
        result = self._result()
        self._emit_progress()
        for store in self._stores.values():
            if store is not None:
                with contextlib.suppress(Exception):
                    store.close()
        return result

    # ----------------------------------------------------------------------------------------------------
    # Internals (all *_locked methods run with self._lock held)
    # ----------------------------------------------------------------------------------------------------

    def _wait_locked(self, done: Callable[[], bool], until: float) -> bool:
        while not done():
            remaining = until - self._clock()
            if remaining <= 0:
                return False
            self._cond.wait(timeout=min(remaining, 1.0))
        return True

    def _all_docs(self) -> list[_Doc]:
        docs = list(self._docs.values())
        if self._manifest is not None:
            docs.append(self._manifest)
        return docs

    def _doc_targets_locked(self, doc: _Doc) -> list[str]:
        """The stores a document's final version goes to."""
        roles = []
        if self._health[PRIMARY].fatal is None:
            roles.append(PRIMARY)
        if self.backup is not None and self._health[BACKUP].fatal is None and (
                self._backed_up or BACKUP in doc.uploaded):
            roles.append(BACKUP)
        return roles

    def _final_docs_done(self) -> bool:
        for doc in self._all_docs():
            for role in self._doc_targets_locked(doc):
                if doc.inflight.get(role):
                    return False
                if doc.final.get(role):
                    continue
                # Given up on this one: it kept failing during the final phase.
                if self._given_up_locked(doc, role):
                    continue
                return False
        return True

    def _given_up_locked(self, doc: _Doc, role: str) -> bool:
        """At close: stop trying to store a document's final version in a store.

        After FINAL_ATTEMPTS failures; or at once when the store failed twice during the final phase and is
        still failing (the backfill deadline has passed by then: it is down, don't spend the close budget).
        """
        if doc.attempts.get(role, 0) >= self.FINAL_ATTEMPTS:
            return True
        h = self._health[role]
        return not h.healthy and h.final_failures >= 2

    def _update_fatal(self) -> None:
        p, b = self._health[PRIMARY], self._health[BACKUP]
        if p.fatal is not None and (self.backup is None or b.fatal is not None) and self._fatal is None:
            msg = str(p.fatal)
            if self.backup is not None and b.fatal is not None:
                msg += f"; and {b.fatal}"
            self._fatal = StoreError("", msg, kind="config", code=p.fatal.code)
            self._last_error = msg
            log.error("no usable store: %s", msg)

    def _failed_over(self, now: float) -> bool:
        """Whether new segments go to the backup."""
        if self.backup is None or self._health[BACKUP].fatal is not None:
            return False
        p = self._health[PRIMARY]
        if p.fatal is not None:
            return True
        return p.failing_since is not None and now - p.failing_since >= self.failover_after

    def _can_try(self, role: str, now: float) -> bool:
        """Whether a request to this store may start now (one at a time while it is failing)."""
        h = self._health[role]
        if h.store is None:
            return False
        if now < h.next_try:
            return False
        if h.fatal is not None or h.failing_since is not None:
            return h.inflight == 0
        return True

    def _backoff(self, n: int) -> float:
        return min(self.retry_max, self.retry_base * (2 ** max(0, n - 1)))

    def _pick_locked(self, now: float):
        """The next task for a worker, or (None, wake_at)."""
        if self._stop or self._fatal is not None:
            return None, None
        wake = now + 1.0
        failed_over = self._failed_over(now)
        primary_ok = self._can_try(PRIMARY, now)
        primary_probe = primary_ok and not self._health[PRIMARY].healthy

        # 1. new segments
        for seg in self._pending:
            if seg.inflight:
                continue
            if seg.not_before > now:
                wake = min(wake, seg.not_before)
                continue
            if not failed_over:
                if primary_ok:
                    return ("segment", seg, PRIMARY), None
            else:
                if self._can_try(BACKUP, now):
                    return ("segment", seg, BACKUP), None
                if primary_ok and not self._backfill:
                    # the backup fails too: let this segment probe the primary
                    return ("segment", seg, PRIMARY), None
            break  # FIFO: the head waits for its store; others would wait for the same store
        # 2. playlists and manifest
        for doc in self._all_docs():
            for role in (PRIMARY, BACKUP):
                if not doc.dirty.get(role) or doc.inflight.get(role):
                    continue
                if role == BACKUP and not (self._backed_up or BACKUP in doc.uploaded):
                    continue
                if doc.kind == "manifest" and not self._final:
                    due = doc.last_upload.get(role, -1e18) + self.manifest_interval
                    if due > now:
                        wake = min(wake, due)
                        continue
                nb = doc.not_before.get(role, 0.0)
                if nb > now:
                    wake = min(wake, nb)
                    continue
                if self._final and self._given_up_locked(doc, role):
                    continue
                if self._can_try(role, now) and not (role == PRIMARY and primary_probe and self._pending):
                    return ("doc", doc, role), None
        # 3. backfill from the backup into the primary
        if self._backfill and primary_ok and self._can_try(BACKUP, now) and (
                self._backfill_until is None or now < self._backfill_until):
            for seg in self._backfill:
                if not seg.inflight and seg.not_before <= now:
                    return ("backfill", seg, PRIMARY), None
        for role in (PRIMARY, BACKUP):
            h = self._health[role]
            if h.store is not None and h.next_try > now:
                wake = min(wake, h.next_try)
        return None, wake

    def _worker(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._stop or self._fatal is not None:
                        return
                    now = self._clock()
                    task, wake = self._pick_locked(now)
                    if task is not None:
                        break
                    self._cond.wait(timeout=max(0.01, min(1.0, (wake or now + 1.0) - now)))
                kind, obj, role = task
                self._health[role].inflight += 1
                if kind == "backfill":
                    self._health[BACKUP].inflight += 1
                if kind == "doc":
                    obj.inflight[role] = True
                else:
                    obj.inflight = True
            try:
                if kind == "segment":
                    self._do_segment(obj, role)
                elif kind == "backfill":
                    self._do_backfill(obj)
                else:
                    self._do_doc(obj, role)
            except Exception as e:  # a bug in a render callback or a store: never kill the worker
                log.exception("upload task %s %s failed unexpectedly", kind, getattr(obj, "key", obj))
                with self._cond:
                    self._last_error = f"internal error: {e!r}"
                    if kind == "doc":
                        obj.attempts[role] = obj.attempts.get(role, 0) + 1
                        obj.not_before[role] = self._clock() + self._backoff(obj.attempts[role])
            finally:
                with self._cond:
                    self._health[role].inflight -= 1
                    if kind == "backfill":
                        self._health[BACKUP].inflight -= 1
                    if kind == "doc":
                        obj.inflight[role] = False
                    else:
                        obj.inflight = False
                    self._changed = True
                    self._cond.notify_all()

    # -- outcomes -------------------------------------------------------------------------------------------

    def _record_success_locked(self, role: str) -> None:
        h = self._health[role]
        if h.failing_since is not None or h.fatal is not None:
            log.warning("%s answers again", h.store.label)
        h.failing_since = None
        h.failures = 0
        h.next_try = 0.0
        h.fatal = None

    def _record_failure_locked(self, role: str, err: StoreError, started: float) -> None:
        h = self._health[role]
        h.last_error = err
        self._last_error = str(err)
        if err.kind == "object":
            return  # the store is fine; this object is not
        if h.failing_since is None:
            h.failing_since = started
            log.warning("%s failing: %s", h.store.label, err)
        h.failures += 1
        if self._final:
            h.final_failures += 1
        h.next_try = self._clock() + self._backoff(h.failures)
        if err.fatal and h.fatal is None:
            h.fatal = err
            log.error("%s unusable: %s", h.store.label, err)
            self._update_fatal()

    def _mark_playlists_dirty_locked(self, key: str, role: str) -> None:
        names = self._key_to_playlists.get(key)
        docs = [self._docs[n] for n in names if n in self._docs] if names else list(self._docs.values())
        for doc in docs:
            doc.dirty[role] = True
        if self._manifest is not None:
            self._manifest.dirty[PRIMARY] = True
            if self._backed_up:
                self._manifest.dirty[BACKUP] = True

    def _do_segment(self, seg: _Segment, role: str) -> None:
        store = self._stores[role]
        started = self._clock()
        try:
            store.put_file(seg.key, seg.path, content_type_for(seg.key), sha256=seg.sha256)
        except StoreError as e:
            with self._cond:
                seg.attempts += 1
                self._record_failure_locked(role, e, started)
                if e.kind == "object":
                    seg.failed = e
                    self._n_failed += 1
                    with contextlib.suppress(ValueError):
                        self._pending.remove(seg)
                    log.error("segment %s cannot be stored: %s", seg.key, e)
                else:
                    log.info("segment %s to %s: attempt %d failed: %s", seg.key, role, seg.attempts, e)
            return
        now = self._clock()
        with self._cond:
            self._record_success_locked(role)
            if role == PRIMARY:
                seg.in_primary = True
                self._n_primary += 1
            else:
                seg.in_backup = True
                self._n_backup_only += 1
                self._backed_up = True
                self._health[BACKUP].used = True
                self._backfill.append(seg)
                # a backup that now holds segments gets its playlists too
                for doc in self._all_docs():
                    doc.dirty[BACKUP] = True
            if seg.stored_at is None:
                seg.stored_at = now
                self._stored_bytes += seg.size
                self.latencies[seg.key] = now - seg.closed_at
            self.last_object_stored_at = now
            with contextlib.suppress(ValueError):
                self._pending.remove(seg)
            self._mark_playlists_dirty_locked(seg.key, role)
        self._delete_spool(seg)

    def _delete_spool(self, seg: _Segment) -> None:
        if not self.delete_spool or seg.spool_deleted or self._stop:
            return
        try:
            os.unlink(seg.path)
        except FileNotFoundError:
            pass
        except OSError as e:
            log.warning("cannot delete spool file %s: %s", seg.path, e)
            return
        seg.spool_deleted = True

    def _do_backfill(self, seg: _Segment) -> None:
        started = self._clock()
        try:
            data = self.backup.get_bytes(seg.key)
        except StoreError as e:
            with self._cond:
                self._record_failure_locked(BACKUP, e, started)
                seg.not_before = self._clock() + self._backoff(seg.attempts + 1)
                seg.attempts += 1
            return
        if hashlib.sha256(data).hexdigest() != seg.sha256:
            with self._cond:
                self._last_error = (f"{self.backup.label}: {seg.key!r} read back with a different sha256; "
                                    "the copy in the backup is kept, not copied")
                seg.failed = StoreError(self.backup.label, f"{seg.key!r}: checksum mismatch in the backup",
                                        kind="object", code="BadDigest")
                with contextlib.suppress(ValueError):
                    self._backfill.remove(seg)
            return
        try:
            self.primary.put_bytes(seg.key, data, content_type_for(seg.key))
        except StoreError as e:
            with self._cond:
                self._record_failure_locked(PRIMARY, e, started)
                if e.kind == "object":
                    seg.failed = e
                    with contextlib.suppress(ValueError):
                        self._backfill.remove(seg)
            return
        now = self._clock()
        with self._cond:
            self._record_success_locked(PRIMARY)
            seg.in_primary = True
            self._n_primary += 1
            self._n_backup_only -= 1
            self.last_object_stored_at = now
            with contextlib.suppress(ValueError):
                self._backfill.remove(seg)
            self._mark_playlists_dirty_locked(seg.key, PRIMARY)
            if not self._backfill:
                log.warning("backfill complete: every segment is in %s", self.primary.label)

    def _render_doc(self, doc: _Doc, role: str) -> tuple[bytes, int]:
        """Render a playlist/manifest for a store; returns (content, number of stored segments listed)."""
        segments = self._segments
        if doc.kind == "manifest":
            def location_of(k: str) -> str | None:
                s = segments.get(k)
                if s is None:
                    return None
                return PRIMARY if s.in_primary else BACKUP if s.in_backup else None
            out = doc.render(location_of)
            return (out.encode() if isinstance(out, str) else bytes(out)), 1

        asked: list[str] = []
        listed = 0
        closed = False

        def is_stored(k: str) -> bool:
            nonlocal listed, closed
            asked.append(k)
            if closed:
                return False
            s = segments.get(k)
            ok = s is not None and (s.in_primary if role == PRIMARY else s.in_backup)
            if not ok and role == PRIMARY:
                closed = True  # prefix-closed: the live playlist only grows at its end
            listed += ok
            return ok

        out = doc.render(is_stored)
        with self._lock:
            for k in asked:
                self._key_to_playlists.setdefault(k, set()).add(doc.key)
        return (out.encode() if isinstance(out, str) else bytes(out)), listed

    def _do_doc(self, doc: _Doc, role: str) -> None:
        with self._lock:
            doc.dirty[role] = False
            final = self._final
        content, listed = self._render_doc(doc, role)
        if (doc.uploaded.get(role) == content) or (listed == 0 and role not in doc.uploaded
                                                   and doc.kind == "playlist"):
            with self._cond:
                if final and doc.uploaded.get(role) == content and not doc.dirty.get(role):
                    doc.final[role] = True
                elif final and listed == 0 and role not in doc.uploaded:
                    doc.final[role] = True  # nothing of it in this store
            return
        store = self._stores[role]
        started = self._clock()
        try:
            store.put_bytes(doc.key, content, content_type_for(doc.key))
        except StoreError as e:
            with self._cond:
                doc.dirty[role] = True
                doc.attempts[role] = doc.attempts.get(role, 0) + 1
                doc.not_before[role] = self._clock() + self._backoff(doc.attempts[role])
                self._record_failure_locked(role, e, started)
                if e.kind == "object":
                    doc.attempts[role] = 99
            return
        with self._cond:
            self._record_success_locked(role)
            doc.uploaded[role] = content
            doc.last_upload[role] = self._clock()
            doc.attempts[role] = 0
            self.last_object_stored_at = self._clock()
            if final and not doc.dirty.get(role):
                doc.final[role] = True

    # -- progress -------------------------------------------------------------------------------------------

    def _progress_locked(self) -> UploadProgress:
        in_primary, backup_only, failed = self._n_primary, self._n_backup_only, self._n_failed
        n = len(self._segments)
        stored = in_primary + backup_only
        if backup_only and in_primary:
            location: Location = "mixed"
        elif backup_only:
            location = "backup"
        else:
            location = "primary"
        recorded = self._recorded_bytes
        return UploadProgress(
            segments=n,
            pending_segments=n - stored,
            recorded_bytes=recorded,
            stored_bytes=self._stored_bytes,
            progress=(self._stored_bytes / recorded) if recorded else 1.0,
            location=location,
            backed_up=self._backed_up,
            last_error=self._last_error,
            primary_segments=in_primary,
            backup_only_segments=backup_only,
            failed_segments=failed,
        )

    def _emit_progress(self) -> None:
        if self.on_progress is None:
            return
        p = self.progress()
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
                p = self._progress_locked()
            if p != last or self._clock() >= due:
                last_emit = self._clock()
                last = p
                if self.on_progress is not None:
                    try:
                        self.on_progress(p)
                    except Exception:
                        log.exception("on_progress callback failed")

    def _result(self) -> UploadResult:
        with self._lock:
            p = self._progress_locked()
            missing = tuple(s.key for s in self._segments.values() if not s.stored)
            backup_only = tuple(s.key for s in self._segments.values() if s.in_backup and not s.in_primary)
            unwritten = tuple(d.key for d in self._all_docs() if not d.final.get(PRIMARY))
            backup_docs_ok = all(d.final.get(BACKUP) or d.final.get(PRIMARY) for d in self._all_docs())
            fatal = self._fatal
            last_error = self._last_error
        primary = self.primary.label
        if fatal is not None:
            return UploadResult("failed", f"{fatal}; {len(missing)} segment(s) kept in the local spool",
                                p, missing, backup_only, unwritten)
        if missing:
            detail = f": {last_error}" if last_error else ""
            return UploadResult("failed", f"{len(missing)} of {p.segments} segment(s) could not be stored "
                                f"(kept in the local spool){detail}", p, missing, backup_only, unwritten)
        if not backup_only and not unwritten:
            return UploadResult("uploaded", f"{p.segments} segment(s) in {primary}", p)
        if backup_docs_ok:
            why = f"; last error: {last_error}" if last_error else ""
            what = f"{len(backup_only)} of {p.segments} segment(s)" if backup_only else "the final playlists"
            where = self.backup.label if self.backup else "the backup store"
            return UploadResult("backed_up", f"{what} only in {where}"
                                f" (not copied to {primary} before the deadline){why}",
                                p, missing, backup_only, unwritten)
        return UploadResult("failed", f"final playlists/manifest not stored ({', '.join(unwritten)}): "
                            f"{last_error}", p, missing, backup_only, unwritten)
