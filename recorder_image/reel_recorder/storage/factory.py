"""open_store: a Store from a RecordingSession ``spec.storage`` / ``spec.backupStorage``.

The spec is the recorder's typed session view (``reel_recorder.session.Storage``: ``endpoint``, ``region``,
``bucket``, ``prefix``, ``credentials_secret_ref``, ``server_side_encryption``, ``local.path``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .base import Store
from .errors import StoreError
from .keys import static_prefix
from .local import LocalStore

if TYPE_CHECKING:
    from ..session import Storage

CREDENTIAL_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


def storage_configured(spec: Storage | None) -> bool:
    """Whether a storage spec names a store (an empty ``backupStorage: {}`` does not)."""
    if spec is None:
        return False
    return bool(spec.bucket or (spec.local is not None and spec.local.path))


def credentials_from_dir(path: str | os.PathLike) -> dict[str, str] | None:
    """Credentials from a mounted Secret folder (one file per key); None when the folder is absent."""
    p = Path(path)
    if not p.is_dir():
        return None
    creds = {}
    for k in CREDENTIAL_KEYS:
        f = p / k
        if f.is_file():
            creds[k] = f.read_text().strip()
    return creds


def open_store(spec: Storage | None, name: str, credentials: Mapping[str, str] | None, **kwargs: Any) -> Store | None:
    """The store a storage spec describes, named ``name`` ("primary"/"backup").

    Returns None for an empty spec (no bucket, no local path). ``credentials`` (AWS_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY, optional AWS_SESSION_TOKEN) come from the Secret named by
    ``credentialsSecretRef``; None means boto3's standard environment/credential chain. Extra keyword
    arguments go to the store (timeouts, ...). Raises StoreError(kind="config") for a spec that cannot work.
    """
    if not storage_configured(spec):
        return None
    key_prefix = static_prefix(spec.prefix)
    local_path = spec.local.path if spec.local is not None else None
    if local_path and spec.bucket:
        raise StoreError(f"{name} store", "both a bucket and local.path are set: choose one", kind="config",
                         code="InvalidConfiguration")
    if local_path:
        return LocalStore(local_path, name=name, key_prefix=key_prefix, **kwargs)
    ref = spec.credentials_secret_ref
    from .s3 import S3Store

    return S3Store(
        spec.bucket,
        name=name,
        region=spec.region,
        endpoint_url=spec.endpoint,
        credentials=credentials,
        server_side_encryption=spec.server_side_encryption or None,
        key_prefix=key_prefix,
        credentials_secret=ref.name if ref is not None else None,
        **kwargs,
    )
