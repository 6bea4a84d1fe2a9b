"""The segment ledger: where each closed segment is, what is left to do, and what the upload came to.

Owned by the :class:`~.uploader.Uploader`, which calls every method with its lock held (from the recorder's
threads, its workers, its monitor or ``close()``); the ledger has no lock and does no I/O. Rules it keeps:

- Every segment the recorder closed is in exactly one of: *pending* (stored nowhere yet, queued in closing
  order for the scheduler), *refused* (the store refused the object for good: it is reported missing and its
  spool file kept), *backup only* (queued for backfill into the primary, unless its copy there cannot be
  copied: then it stays backup only) or in the primary.
- The counts behind :meth:`Ledger.progress` are kept up to date on every change, so progress is O(1) however
  long the recording.
- Once any segment has been stored in the backup the session is *backed up*, even if backfill later copies
  everything into the primary.
- :meth:`Ledger.result` classifies the end of the session: ``uploaded`` when every segment and the final
  playlists and manifest are in the primary; ``backed_up`` when everything is stored, but some of it only in the
  backup; ``failed`` when a segment is stored nowhere, no store was usable, or a final document is nowhere.
"""

from __future__ import annotations

import contextlib
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Location = Literal["primary", "backup", "mixed"]
ResultStatus = Literal["uploaded", "backed_up", "failed"]

# The two store roles, as the uploader, the store health and the documents name them.
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
    reason: str | None = None         # a FailureReason when the storing itself decided the failure (IntegrityMismatch)
    mismatched: tuple[str, ...] = ()  # keys that do not match the manifest in the store they are in (integrity.py)
    unverified: int = 0               # objects the integrity check could not read (their store stopped answering)

    @property
    def ok(self) -> bool:
        return self.status != "failed"


@dataclass(eq=False)
class Segment:
    """One closed segment. ``inflight``, ``not_before`` and ``attempts`` are the scheduler's; the rest the
    ledger's."""

    key: str
    path: Path
    size: int
    sha256: str
    closed_at: float
    in_primary: bool = False
    in_backup: bool = False
    stored_at: float | None = None       # first time it was stored anywhere
    inflight: bool = False
    not_before: float = 0.0              # backfill: not before this time (after a failed read of the backup)
    attempts: int = 0
    spool_deleted: bool = False

    @property
    def stored(self) -> bool:
        return self.in_primary or self.in_backup


class Ledger:
    """Every segment handed to the uploader, its queues and counters. Caller holds the uploader's lock for
    every method; the workers' renders read ``segments`` without it (entries are only added, flags only set)."""

    def __init__(self) -> None:
        self.segments: dict[str, Segment] = {}
        self.pending: deque[Segment] = deque()      # stored nowhere, not refused; in closing order
        self.backfill: deque[Segment] = deque()     # only in the backup
        self.recorded_bytes = 0
        self.stored_bytes = 0
        self.n_primary = 0          # segments in the primary
        self.n_backup_only = 0      # segments only in the backup
        self.n_failed = 0           # segments refused for good, stored nowhere
        self.backed_up = False      # a segment has been stored in the backup
        self.last_error = ""
        # Timings, for the benchmark and logs (Uploader.latencies, Uploader.last_object_stored_at):
        self.latencies: dict[str, float] = {}   # key -> seconds from closed to first stored
        self.last_object_stored_at: float | None = None  # a segment or a document (set by its uploader)

    def add(self, key: str, path: Path, *, size: int, sha256: str, now: float) -> None:
        """A segment the recorder closed: pending. Caller holds the uploader's lock."""
        if key in self.segments:
            raise ValueError(f"segment {key!r} was already handed to the uploader")
        seg = Segment(key=key, path=Path(path), size=int(size), sha256=sha256.lower(), closed_at=now)
        self.segments[key] = seg
        self.pending.append(seg)
        self.recorded_bytes += seg.size

    def adopt(self, key: str, *, size: int, sha256: str, in_primary: bool, in_backup: bool, now: float) -> None:
        """A segment stored by an earlier run of this recording (a resumed one): counted as recorded and stored
        where it is, nothing to upload; a copy only in the backup is queued for backfill. Caller holds the
        uploader's lock."""
        if key in self.segments:
            raise ValueError(f"segment {key!r} was already handed to the uploader")
        if not (in_primary or in_backup):
            raise ValueError(f"segment {key!r} is stored nowhere: nothing to adopt")
        seg = Segment(key=key, path=Path(), size=int(size), sha256=sha256.lower(), closed_at=now,
                      in_primary=in_primary, in_backup=in_backup, stored_at=now, spool_deleted=True)
        self.segments[key] = seg
        self.recorded_bytes += seg.size
        self.stored_bytes += seg.size
        if in_primary:
            self.n_primary += 1
        else:
            self.n_backup_only += 1
            self.backed_up = True
            self.backfill.append(seg)

    def stored(self, seg: Segment, role: str, now: float) -> None:
        """A pending segment is stored in ``role``'s store (a backup copy is queued for backfill). Caller holds
        the uploader's lock."""
        if role == PRIMARY:
            seg.in_primary = True
            self.n_primary += 1
        else:
            seg.in_backup = True
            self.n_backup_only += 1
            self.backed_up = True
            self.backfill.append(seg)
        if seg.stored_at is None:
            seg.stored_at = now
            self.stored_bytes += seg.size
            self.latencies[seg.key] = now - seg.closed_at
        self.last_object_stored_at = now
        with contextlib.suppress(ValueError):
            self.pending.remove(seg)

    def refused(self, seg: Segment) -> None:
        """The store refused a pending segment for good (object error): stored nowhere, not retried. Caller holds
        the uploader's lock."""
        self.n_failed += 1
        with contextlib.suppress(ValueError):
            self.pending.remove(seg)

    def backfilled(self, seg: Segment, now: float) -> None:
        """A backup-only segment was copied into the primary. Caller holds the uploader's lock."""
        self.last_object_stored_at = now
        seg.in_primary = True
        self.n_primary += 1
        self.n_backup_only -= 1
        self.drop_backfill(seg)

    def drop_backfill(self, seg: Segment) -> None:
        """Stop trying to copy this segment into the primary (it stays in the backup). Caller holds the uploader's
        lock."""
        with contextlib.suppress(ValueError):
            self.backfill.remove(seg)

    def progress(self) -> UploadProgress:
        """Caller holds the uploader's lock. O(1)."""
        in_primary, backup_only = self.n_primary, self.n_backup_only
        n = len(self.segments)
        if backup_only and in_primary:
            location: Location = "mixed"
        elif backup_only:
            location = "backup"
        else:
            location = "primary"
        recorded = self.recorded_bytes
        return UploadProgress(
            segments=n,
            pending_segments=n - in_primary - backup_only,
            recorded_bytes=recorded,
            stored_bytes=self.stored_bytes,
            progress=(self.stored_bytes / recorded) if recorded else 1.0,
            location=location,
            backed_up=self.backed_up,
            last_error=self.last_error,
            primary_segments=in_primary,
            backup_only_segments=backup_only,
            failed_segments=self.n_failed,
        )

    def result(self, *, fatal: Exception | None, unwritten: tuple[str, ...], docs_stored: bool,
               primary_label: str, backup_label: str | None) -> UploadResult:
        """What ended where, at the end of ``close()``. Caller holds the uploader's lock.

        ``fatal``: no store was usable; ``unwritten``: documents whose final version is not in the primary;
        ``docs_stored``: every document's final version is in the primary or the backup.
        """
        p = self.progress()
        missing = tuple(s.key for s in self.segments.values() if not s.stored)
        backup_only = tuple(s.key for s in self.segments.values() if s.in_backup and not s.in_primary)
        last_error = self.last_error
        if fatal is not None:
            return UploadResult("failed", f"{fatal}; {len(missing)} segment(s) kept in the local spool",
                                p, missing, backup_only, unwritten)
        if missing:
            detail = f": {last_error}" if last_error else ""
            return UploadResult("failed", f"{len(missing)} of {p.segments} segment(s) could not be stored "
                                f"(kept in the local spool){detail}", p, missing, backup_only, unwritten)
        if not backup_only and not unwritten:
            return UploadResult("uploaded", f"{p.segments} segment(s) in {primary_label}", p)
        if docs_stored:
            why = f"; last error: {last_error}" if last_error else ""
            what = f"{len(backup_only)} of {p.segments} segment(s)" if backup_only else "the final playlists"
            where = backup_label or "the backup store"
            return UploadResult("backed_up", f"{what} only in {where}"
                                f" (not copied to {primary_label} before the deadline){why}",
                                p, missing, backup_only, unwritten)
        return UploadResult("failed", f"final playlists/manifest not stored ({', '.join(unwritten)}): "
                            f"{last_error}", p, missing, backup_only, unwritten)
