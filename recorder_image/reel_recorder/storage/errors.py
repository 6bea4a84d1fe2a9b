"""Errors raised by stores.

Every error names the store it comes from ("primary store s3://bucket @ http://host:9000") and says what a
person can do about it. Three kinds decide what the uploader does with them:

- ``config``: the store cannot be used at all (wrong credentials, missing bucket, unwritable directory, KMS
  key refused). Retrying the same request will not help; the uploader fails over to the other store, and
  when no store is usable the session fails.
- ``object``: this one object cannot be stored (a key that would escape the store's root, a spool file that
  vanished or no longer matches its checksum). The store itself is fine; the object is reported as missing.
- ``object`` with code ``ObjectExists`` (:class:`ObjectExistsError`): a write-once object (a segment, an MP4)
  found a different object at its key, which is not written over. Another recording writes under this prefix:
  the uploader ends the session with it (fatal), naming the key.
- ``transient``: anything else (timeouts, refused connections, HTTP 5xx, throttling): retry with backoff.
"""

from __future__ import annotations

from typing import Literal

ErrorKind = Literal["config", "object", "transient"]


class StoreError(Exception):
    """A store operation failed. ``str(err)`` is a complete sentence for a user."""

    def __init__(
        self,
        store: str,
        message: str,
        *,
        kind: ErrorKind = "transient",
        code: str | None = None,
    ) -> None:
        super().__init__(f"{store}: {message}" if store else message)
        self.store = store
        self.message = message
        self.kind: ErrorKind = kind
        self.code = code

    @property
    def fatal(self) -> bool:
        """True when the store is unusable as configured (credentials, bucket, permissions)."""
        return self.kind == "config"

    @property
    def retryable(self) -> bool:
        return self.kind == "transient"


class InvalidKeyError(StoreError):
    """An object key that is empty, malformed, or would land outside the store's root or prefix."""

    def __init__(self, store: str, key: str, why: str) -> None:
        super().__init__(store, f"refused object key {key!r}: {why}", kind="object", code="InvalidKey")
        self.key = key


#: The code of :class:`ObjectExistsError`.
OBJECT_EXISTS = "ObjectExists"


class ObjectExistsError(StoreError):
    """A write-once object (a segment, an MP4) found a different object at its key: it is not written over
    (storage/base.py). Fatal for the session: the uploader stops (Health.collided), naming the key."""

    def __init__(self, store: str, key: str, why: str = "") -> None:
        detail = f" ({why})" if why else ""
        super().__init__(store, f"an object already exists at {key!r} and differs{detail}: another recording "
                                "writes under this prefix? It was not written over", kind="object",
                         code=OBJECT_EXISTS)
        self.key = key
