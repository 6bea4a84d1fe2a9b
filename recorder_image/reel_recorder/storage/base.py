"""The store interface shared by LocalStore and S3Store.

Objects are never silently overwritten. ``put_file`` stores an object that is written once (a segment, an MP4, the
backfill's copies): stores create it only when the key is free (S3 ``If-None-Match: *``, a directory's exclusive
link into place). An object already there is accepted only when it holds the same bytes (size and SHA-256: a retry
of our own upload whose first answer was lost, a backfill finding its copy in place); any other object there is an
:class:`ObjectExistsError`, and nothing is written over it. ``put_bytes`` stores the documents that are rewritten on
purpose while recording (playlists, the manifest): unconditionally; ``put_bytes_once`` is its write-once form.
"""

from __future__ import annotations

import hashlib
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .errors import InvalidKeyError, ObjectExistsError, StoreError
from .keys import key_problem

log = logging.getLogger("reel.storage")


class Store(ABC):
    """Somewhere objects can be written: a directory or an S3 bucket.

    ``name`` is the store's role ("primary" or "backup"); ``key_prefix`` is the fixed part every key must
    start with (the leading folders of the configured prefix template). All methods are thread-safe and raise
    :class:`StoreError` (see its ``kind``) on failure.
    """

    def __init__(self, name: str, key_prefix: str = "") -> None:
        self.name = name
        self.key_prefix = key_prefix

    @abstractmethod
    def describe(self) -> str:
        """Where the store writes, e.g. ``s3://bucket/prefix @ http://127.0.0.1:9000`` or ``file:///data``."""

    @property
    def label(self) -> str:
        """``"primary store s3://b @ URL"``: how errors name the store."""
        return f"{self.name} store {self.describe()}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.label}>"

    def validate_key(self, key: str) -> str:
        """Return ``key`` if it may be written, else raise InvalidKeyError."""
        why = key_problem(key)
        if why is None and self.key_prefix and not key.startswith(self.key_prefix):
            why = f"outside the configured prefix {self.key_prefix!r}"
        if why is not None:
            raise InvalidKeyError(self.label, key if isinstance(key, str) else repr(key), why)
        return key

    def error(self, message: str, *, kind="transient", code: str | None = None) -> StoreError:
        return StoreError(self.label, message, kind=kind, code=code)

    @abstractmethod
    def check(self) -> None:
        """Fail fast (StoreError) when the store cannot be written: credentials, bucket, permissions."""

    @abstractmethod
    def put_file(self, key: str, path: Path, content_type: str | None = None, *,
                 sha256: str | None = None) -> None:
        """Store the file at ``path`` under ``key``, written once (module docstring): never over an object already
        there; the same bytes already there are accepted, others raise ObjectExistsError. With ``sha256`` (hex),
        the stored bytes are verified."""

    @abstractmethod
    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        """Store ``data`` under ``key`` (replacing it atomically): for documents rewritten on purpose (playlists,
        the manifest); unconditional."""

    def put_bytes_once(self, key: str, data: bytes, content_type: str | None = None) -> None:
        """``put_bytes`` written once, like ``put_file`` (the uploader's backfill of a segment). This default
        looks before it writes (a HEAD, then an unconditional PUT: another writer may come between the two);
        LocalStore and S3Store override it with a conditional write."""
        sha = hashlib.sha256(data).hexdigest()
        try:
            self.stat(key)
        except StoreError as err:
            if err.code != "NoSuchKey":
                raise
            self.put_bytes(key, data, content_type)
            return
        self.accept_existing(key, len(data), sha)

    def accept_existing(self, key: str, size: int, sha256: str) -> None:
        """A write-once put found an object already at ``key``. Returns when it holds the same bytes (``size``,
        ``sha256``): a retry of our own upload whose first answer was lost, or a copy already in place. Raises
        ObjectExistsError when it differs (nothing is written over it), a transient StoreError when it has gone
        again (the caller retries), and the store's own errors."""
        from .integrity import Expected, check_object  # integrity imports this module

        bad = check_object(self, Expected(key, int(size), sha256.lower()))
        if bad is None:
            log.info("%s: %r is already stored with the same bytes (a retried upload): accepted", self.label, key)
            return
        if bad.why == "missing":
            raise self.error(f"{key!r} was there when written once and is gone now: will retry",
                             kind="transient", code="ObjectVanished")
        raise ObjectExistsError(self.label, key, bad.why)

    @abstractmethod
    def get_bytes(self, key: str) -> bytes:
        """The object's bytes; StoreError(kind="object", code="NoSuchKey") when absent."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether an object exists under ``key``."""

    @abstractmethod
    def list_keys(self, prefix: str) -> list[str]:
        """The keys of every object under ``prefix`` (a folder key ending in '/'), sorted (what a resumed
        recording reads back)."""

    # -- reading back, checking, deleting (integrity at the end, backfill: storage/integrity.py, backfill.py) --

    def stat(self, key: str) -> ObjectInfo:
        """The stored object's size and, when the store keeps one for it, its SHA-256 (hex); StoreError
        (kind "object", code "NoSuchKey") when absent. This default reads the object; stores override it with
        a cheaper request (S3: one HEAD)."""
        data = self.get_bytes(key)
        return ObjectInfo(len(data), hashlib.sha256(data).hexdigest())

    def read_into(self, key: str, out: BinaryIO) -> None:
        """Write the object's bytes into ``out``, streaming (stores override the default, which holds the whole
        object in memory)."""
        out.write(self.get_bytes(key))

    def delete(self, key: str) -> None:
        """Delete the object (absent is fine)."""
        raise self.error(f"{key!r}: this store cannot delete objects", kind="object", code="NotImplemented")

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


@dataclass(frozen=True)
class ObjectInfo:
    """What a store says about one stored object: its size, and its SHA-256 (hex) when the store keeps it."""

    size: int
    sha256: str | None = None


CHUNK = 1 << 20  # streaming reads and writes go by 1 MiB


def sha256_file(path: Path, bufsize: int = CHUNK) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(bufsize):
            h.update(chunk)
    return h.hexdigest()
