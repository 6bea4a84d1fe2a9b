"""Integrity at the end: every object the manifest lists is checked in the store it is listed in.

What is checked, per object (a segment or an MP4: what ``manifest.json`` lists with ``bytes`` and ``sha256``):

- its size, from the store's metadata (S3: one ``HEAD``; a directory: the file);
- its SHA-256: S3 returns the whole-object checksum it verified when the object was stored (``put_file`` sends
  ``x-amz-checksum-sha256``; ``HEAD`` with ``ChecksumMode: ENABLED`` reads it back), so one ``HEAD`` per object is
  the whole cost; an object without one (a multipart upload above 64 MiB, whose checksum is of its parts, or a
  server that keeps none) and every file of a directory store are read back, streaming (1 MiB at a time), and hashed.

Playlists and the manifest themselves are not listed in the manifest and are not checked here (they are rendered
from what was checked). The recorder runs :func:`check_objects` in ``Uploader.close`` before it reports
``Completed``/``BackedUp``; the backfill job (backfill.py) runs it on the primary before it reports ``Completed``.
A mismatch is never ``Completed``: the session fails with ``IntegrityMismatch``, the message naming the objects.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .base import Store
from .errors import StoreError

log = logging.getLogger("reel.storage")

#: At most this many objects are named in a message (the rest are counted).
NAMED = 5


@dataclass(frozen=True)
class Expected:
    """An object as the manifest describes it."""

    key: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Mismatch:
    """An object that is not what the manifest says (or not there): ``why`` is a sentence for a person."""

    key: str
    store: str  # the store's label
    why: str


class _Hasher:
    """A write-only file that hashes what is written to it (read back without keeping the bytes)."""

    def __init__(self) -> None:
        self.h = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.h.update(data)
        self.size += len(data)
        return len(data)


def check_object(store: Store, want: Expected) -> Mismatch | None:
    """Check one object in ``store``. Returns the mismatch, or None when it matches. Raises StoreError for a store
    that does not answer (transient, config): that is not a verdict about the object."""
    try:
        info = store.stat(want.key)
    except StoreError as err:
        if err.code == "NoSuchKey":
            return Mismatch(want.key, store.label, "missing")
        raise
    if info.size != want.size:
        return Mismatch(want.key, store.label, f"{info.size} bytes stored, {want.size} recorded")
    sha = info.sha256
    if sha is None:  # the store keeps no whole-object checksum: read it back
        sink = _Hasher()
        store.read_into(want.key, sink)
        if sink.size != want.size:
            return Mismatch(want.key, store.label, f"{sink.size} bytes read back, {want.size} recorded")
        sha = sink.h.hexdigest()
    if sha.lower() != want.sha256.lower():
        return Mismatch(want.key, store.label, f"sha256 {sha[:12]}... stored, {want.sha256[:12]}... recorded")
    return None


def check_objects(checks: Iterable[tuple[Store, Expected]]) -> list[Mismatch]:
    """Check every (store, object); the mismatches, in order. StoreError propagates (see :func:`check_object`)."""
    found = []
    for store, want in checks:
        bad = check_object(store, want)
        if bad is not None:
            log.error("integrity: %s in %s: %s", bad.key, bad.store, bad.why)
            found.append(bad)
    return found


def verify_stored(stored: Iterable[tuple[Store | None, Expected]], *, until: float,
                  clock: Callable[[], float]) -> tuple[list[Mismatch], int]:
    """The recorder's check at the end (``Uploader.close``): (mismatches, unverified count). A store that stops
    answering is not asked again (its remaining objects are counted unverified, not mismatched: the uploader has
    just stored them there, and a store that is down is no verdict on them); so is everything once ``until`` (on
    ``clock``) has passed."""
    mismatches: list[Mismatch] = []
    unverified, silent, total = 0, set(), 0
    for store, want in stored:
        total += 1
        if store is None or store.name in silent or clock() > until:
            unverified += 1
            continue
        try:
            bad = check_object(store, want)
        except StoreError as err:
            log.warning("integrity: cannot check %s: %s", want.key, err)
            silent.add(store.name)
            unverified += 1
            continue
        if bad is not None:
            log.error("integrity: %s in %s: %s", bad.key, bad.store, bad.why)
            mismatches.append(bad)
    if unverified:
        log.warning("integrity: %d of %d stored object(s) could not be checked", unverified, total)
    return mismatches, unverified


def mismatch_message(mismatches: list[Mismatch], total: int) -> str:
    """``"2 of 40 stored object(s) do not match the manifest: a/seg_00003.ts in primary store ...: missing; ..."``"""
    named = "; ".join(f"{m.key} in {m.store}: {m.why}" for m in mismatches[:NAMED])
    more = f"; and {len(mismatches) - NAMED} more" if len(mismatches) > NAMED else ""
    return f"{len(mismatches)} of {total} stored object(s) do not match the manifest: {named}{more}"
