"""Transfers: what an upload worker does with one task: store a segment, backfill one, upload a document.

Called by the :class:`~.uploader.Uploader`'s worker threads WITHOUT the uploader's lock held: each store request
and each render runs outside it, and each method takes the lock (the condition it was given) for the state
changes before and after. The scheduler (uploader.py) has marked the task in flight and counted the request
against the store's health; the worker clears both when the method returns or raises. Rules kept here:

- A segment is stored with its checksum verified by the store; a spool file is deleted only once its segment is
  stored somewhere, and not once ``close()`` stopped waiting for the workers (a worker blocked in a request to a
  store that is down may come back after the result was made).
- Backfill is checksum-verified: a copy that reads back from the backup with a different sha256 is kept there
  and not copied; the segment stays backup only.
- A segment the store refuses (an ``object`` error: a refused key, a spool file gone) is not retried.
- Segments, MP4s and backfilled copies are written once (base.py): the same bytes already at the key are
  accepted as stored (our own upload, retried after its answer was lost); a different object there is never
  written over: the segment is refused (its spool file kept) and the session ends (``Health.collided``), the
  error naming the key. Playlists and the manifest are rewritten (unconditional ``put_bytes``).
- Every store error becomes the uploader's last error (progress, result) and goes to the store's health.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Callable

from .documents import Doc, Documents
from .errors import OBJECT_EXISTS, StoreError
from .health import Health
from .keys import content_type_for
from .ledger import BACKUP, PRIMARY, Ledger, Segment

log = logging.getLogger("reel.storage")


class Transfers:
    def __init__(self, cond: threading.Condition, ledger: Ledger, health: Health, docs: Documents, *,
                 clock: Callable[[], float], delete_spool: bool, stopped: Callable[[], bool]) -> None:
        self._cond = cond
        self._ledger = ledger
        self._health = health
        self._docs = docs
        self._clock = clock
        self.delete_spool = delete_spool
        self._stopped = stopped  # close() stopped waiting for the workers (read without the lock)

    def _store_failed_locked(self, role: str, err: StoreError, started: float) -> None:
        """A request to ``role``'s store failed. Caller holds the uploader's lock."""
        self._ledger.last_error = str(err)
        if self._health.record_failure(role, err, started, final=self._docs.final_phase):
            self._ledger.last_error = str(self._health.fatal)

    def segment(self, seg: Segment, role: str) -> None:
        """Store a pending segment in ``role``'s store; then delete its spool file."""
        started = self._clock()
        try:
            self._health[role].store.put_file(seg.key, seg.path, content_type_for(seg.key), sha256=seg.sha256)
        except StoreError as e:
            with self._cond:
                seg.attempts += 1
                self._store_failed_locked(role, e, started)
                if e.kind == "object":
                    self._ledger.refused(seg)
                    log.error("segment %s cannot be stored: %s", seg.key, e)
                    if e.code == OBJECT_EXISTS:
                        self._health.collided(e)
                else:
                    log.info("segment %s to %s: attempt %d failed: %s", seg.key, role, seg.attempts, e)
            return
        now = self._clock()
        with self._cond:
            self._health.record_success(role)
            self._ledger.stored(seg, role, now)
            self._docs.segment_stored(seg.key, role, backed_up=self._ledger.backed_up)
        self._delete_spool(seg)

    def _delete_spool(self, seg: Segment) -> None:
        if not self.delete_spool or seg.spool_deleted or self._stopped():
            return
        try:
            os.unlink(seg.path)
        except FileNotFoundError:
            pass
        except OSError as e:
            log.warning("cannot delete spool file %s: %s", seg.path, e)
            return
        seg.spool_deleted = True

    def backfill(self, seg: Segment) -> None:
        """Copy a backup-only segment into the primary (read back from the backup, checksum-verified)."""
        backup, primary = self._health[BACKUP].store, self._health[PRIMARY].store
        started = self._clock()
        try:
            data = backup.get_bytes(seg.key)
        except StoreError as e:
            with self._cond:
                self._store_failed_locked(BACKUP, e, started)
                seg.not_before = self._clock() + self._health.backoff(seg.attempts + 1)
                seg.attempts += 1
            return
        if hashlib.sha256(data).hexdigest() != seg.sha256:
            with self._cond:
                self._ledger.last_error = (f"{backup.label}: {seg.key!r} read back with a different sha256; "
                                           "the copy in the backup is kept, not copied")
                self._ledger.drop_backfill(seg)
            return
        try:
            primary.put_bytes_once(seg.key, data, content_type_for(seg.key))
        except StoreError as e:
            with self._cond:
                self._store_failed_locked(PRIMARY, e, started)
                if e.kind == "object":
                    self._ledger.drop_backfill(seg)
                    if e.code == OBJECT_EXISTS:
                        self._health.collided(e)
            return
        now = self._clock()
        with self._cond:
            self._health.record_success(PRIMARY)
            self._ledger.backfilled(seg, now)
            self._docs.segment_stored(seg.key, PRIMARY, backed_up=self._ledger.backed_up)
            if not self._ledger.backfill:
                log.warning("backfill complete: every segment is in %s", primary.label)

    def document(self, doc: Doc, role: str) -> None:
        """Render a playlist or the manifest for ``role``'s store and upload it if it changed."""
        with self._cond:
            doc.dirty[role] = False
            final = self._docs.final_phase
        content, listed, asked = self._docs.render(doc, role, self._ledger.segments)
        with self._cond:
            if not self._docs.rendered(doc, role, content, listed, asked, final=final):
                return
        started = self._clock()
        try:
            self._health[role].store.put_bytes(doc.key, content, content_type_for(doc.key))
        except StoreError as e:
            with self._cond:
                self._docs.failed(doc, role, self._clock(), self._health, upload=True, refused=e.kind == "object")
                self._store_failed_locked(role, e, started)
            return
        with self._cond:
            self._health.record_success(role)
            now = self._clock()
            self._docs.stored(doc, role, content, now, final=final)
            self._ledger.last_object_stored_at = now
