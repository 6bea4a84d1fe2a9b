"""Backfill after the end: move what a BackedUp recording holds only in the backup store into the primary.

One pass (:func:`backfill_pass`), idempotent, so a pass that fails half-way is simply run again (``reel-recorder
backfill``, ../backfill.py, retries with backoff until its deadline; the operator runs it as a Job):

1. the manifest: the backup's final version (the recorder writes its final manifest there when it ends backed
   up), else the primary's; one without ``stoppedAt`` is not final and is used only when no final one exists;
2. every object it lists with a location (segments, fMP4 init segments, MP4s) is checked in the primary
   (integrity.py: size and SHA-256, one HEAD each on S3). One that is missing or differs is copied from the
   backup: streamed into a temporary file in ``workdir`` while its SHA-256 is computed (1 MiB at a time: a
   multi-GB MP4 needs no memory, only disk), compared with the manifest, stored with ``put_file(sha256=...)`` (S3
   verifies the checksum on the way in; written once, base.py: the same bytes already there are fine, a different
   object there is never written over and is an ``IntegrityMismatch``) and checked in the primary again. A backup
   copy that differs from the manifest is an ``IntegrityMismatch`` (nothing can make it right: the pass stops, the
   backup is left as it is);
3. every playlist is rendered again from the manifest, listing every segment (``#EXT-X-ENDLIST``), and the
   manifest with every location ``primary`` and a ``backfill`` entry (when, how much), into the primary: the
   manifest last, so a manifest that says "all in the primary" is only written once that is true;
4. unless ``keep``: the backup's copies of the objects verified in the primary, and its playlists and manifest,
   are deleted (only those keys under the recording's prefix; anything else there is left alone).

Store errors (``StoreError``: a store down, credentials refused) propagate: the caller retries the pass.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from reel_api.vocabulary import FailureReason

from ..layout import manifest_key
from ..output.playlist import Playlist, PlaylistEntry
from .base import CHUNK, Store
from .errors import ObjectExistsError, StoreError
from .integrity import Expected, Mismatch, check_object, mismatch_message
from .keys import content_type_for

log = logging.getLogger("reel.backfill")

PRIMARY, BACKUP = "primary", "backup"  # locations in manifest.json (what ledger.PRIMARY/BACKUP name)


class BackfillError(Exception):
    """A problem no retry can solve (a backup copy that differs from the manifest, no manifest at all): ``reason``
    is a FailureReason, ``str(err)`` the message for a person."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class BackfillReport:
    objects: int          # objects the manifest lists (with a location)
    copied: int           # copied from the backup in this pass
    copied_bytes: int
    deleted: int          # backup objects deleted
    seconds: float

    def as_status(self, *, kept: bool) -> dict:
        return {"objects": self.copied, "bytes": self.copied_bytes, "backupDeleted": not kept}


def prefix_of(manifest: str) -> str:
    """The recording's prefix from its manifest key (status.manifest); ValueError when it is not one."""
    name = manifest_key("")
    if not manifest.endswith(name):
        raise ValueError(f"{manifest!r} is not a manifest key (…/{name})")
    return manifest[: -len(name)]


def read_manifest(primary: Store, backup: Store, prefix: str) -> dict:
    """The manifest to backfill by (rule 1 of the module docstring)."""
    key = manifest_key(prefix)
    found = []
    for store in (backup, primary):
        try:
            found.append(json.loads(store.get_bytes(key)))
        except StoreError as err:
            if err.code != "NoSuchKey":
                raise
        except ValueError as err:
            log.warning("%s in %s is not JSON: %s", key, store.label, err)
    final = [d for d in found if isinstance(d, dict) and d.get("stoppedAt")]
    if final or found:
        return (final or found)[0]
    raise BackfillError(FailureReason.BACKFILL_FAILED, f"no {key} in {backup.label} nor {primary.label}: "
                                                       "nothing says what to backfill")


def folders(doc: dict) -> list[dict]:
    """The participants' records and the composite's (each with ``segments``, maybe ``mp4`` and ``playlist``)."""
    return [*(doc.get("participants") or []), *([doc["composite"]] if doc.get("composite") else [])]


def listed_objects(doc: dict) -> list[tuple[dict, Expected]]:
    """Every object the manifest lists with a location: (its entry in the document, what it must be)."""
    out = []
    for folder in folders(doc):
        for entry in [*(folder.get("inits") or []), *(folder.get("segments") or []),
                      *([folder["mp4"]] if folder.get("mp4") else [])]:
            if entry.get("location") in (PRIMARY, BACKUP) and entry.get("key") and entry.get("sha256"):
                out.append((entry, Expected(entry["key"], int(entry["bytes"]), entry["sha256"])))
    return out


class _HashingFile:
    """Writes to a file and hashes what passes (the copy's SHA-256 without a second read)."""

    def __init__(self, f) -> None:
        import hashlib

        self.f, self.h, self.size = f, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.h.update(data)
        self.size += len(data)
        return self.f.write(data)


def copy_object(backup: Store, primary: Store, want: Expected, workdir: Path, why: Mismatch | None = None) -> None:
    """Stream one object from the backup into the primary through a temporary file, verified on both sides.
    ``why``: what the primary's copy lacks (named when the backup has none either)."""
    fd, name = tempfile.mkstemp(prefix=".reel-backfill-", dir=workdir)
    try:
        with os.fdopen(fd, "wb", buffering=CHUNK) as f:
            sink = _HashingFile(f)
            try:
                backup.read_into(want.key, sink)
            except StoreError as err:
                if err.code != "NoSuchKey":
                    raise
                lacking = f"{why.why} in {why.store}" if why else "not in the primary"
                raise BackfillError(FailureReason.INTEGRITY_MISMATCH,
                                    f"{want.key}: {lacking}, and {backup.label} has no copy") from None
        if sink.size != want.size or sink.h.hexdigest() != want.sha256.lower():
            raise BackfillError(FailureReason.INTEGRITY_MISMATCH,
                                f"the copy of {want.key} in {backup.label} does not match the manifest ({sink.size} "
                                f"bytes, sha256 {sink.h.hexdigest()[:12]}...; recorded {want.size} bytes, "
                                f"{want.sha256[:12]}...): it is left there, nothing was copied")
        try:
            primary.put_file(want.key, Path(name), content_type_for(want.key), sha256=want.sha256)
        except ObjectExistsError as err:
            raise BackfillError(FailureReason.INTEGRITY_MISMATCH, f"{err}; the backup's copy is left there") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)
    bad = check_object(primary, want)
    if bad is not None:
        raise BackfillError(FailureReason.INTEGRITY_MISMATCH, mismatch_message([bad], 1))


def playlist_text(folder: dict, segment_seconds: int) -> str:
    """A folder's final playlist listing every segment (the recorder's own renderer, output/playlist.py)."""
    pl = Playlist(target_duration=int(segment_seconds) + 1, ended=True)
    inits = {i["name"]: i["key"] for i in folder.get("inits") or []}
    for s in folder.get("segments") or []:
        pl.add(PlaylistEntry(uri=s["name"], key=s["key"], duration=float(s["duration"]),
                             discontinuity=bool(s.get("discontinuity")), map_uri=s.get("init"),
                             map_key=inits.get(s["init"]) if s.get("init") else None))
    return pl.render()


def backfill_pass(primary: Store, backup: Store, prefix: str, *, keep: bool, segment_seconds: int, workdir: Path,
                  clock: Callable[[], float] = time.monotonic) -> BackfillReport:
    """One pass of the module docstring's four steps. Raises BackfillError (give up) or StoreError (retry)."""
    t0 = clock()
    doc = read_manifest(primary, backup, prefix)
    objects = listed_objects(doc)
    copied = copied_bytes = 0
    for entry, want in objects:
        bad = check_object(primary, want)
        if bad is not None:
            copy_object(backup, primary, want, workdir, bad)
            copied += 1
            copied_bytes += want.size
            log.info("copied %s (%d bytes) into %s", want.key, want.size, primary.label)
        entry["location"] = PRIMARY
    documents = []
    for folder in folders(doc):
        if folder.get("playlist"):
            primary.put_bytes(folder["playlist"], playlist_text(folder, segment_seconds).encode(),
                              content_type_for(folder["playlist"]))
            documents.append(folder["playlist"])
    doc["backfill"] = {"at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "from": backup.describe(),
                       "objects": copied, "bytes": copied_bytes, "backupKept": keep}
    key = manifest_key(prefix)
    primary.put_bytes(key, (json.dumps(doc, indent=2) + "\n").encode(), content_type_for(key))
    documents.append(key)
    deleted = 0
    if not keep:
        ours = {want.key for _, want in objects} | set(documents)
        for k in backup.list_keys(prefix):
            if k in ours:
                backup.delete(k)
                deleted += 1
    report = BackfillReport(objects=len(objects), copied=copied, copied_bytes=copied_bytes, deleted=deleted,
                            seconds=clock() - t0)
    log.warning("backfill done: %d of %d object(s) copied (%d bytes) in %.1f s; %s", copied, len(objects),
                copied_bytes, report.seconds, "backup kept" if keep else f"{deleted} backup object(s) deleted")
    return report
