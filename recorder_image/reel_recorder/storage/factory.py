"""open_store: a Store from a RecordingSession ``spec.storage`` / ``spec.backupStorage``.

The spec is the reel_api pydantic model (fields ``endpoint``, ``region``, ``bucket``, ``prefix``,
``credentials_secret_ref``, ``server_side_encryption``, ``local.path``); any object with those attributes,
or a plain dict using either the Python or the camelCase (YAML) names, works too.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .base import Store
from .errors import StoreError
from .keys import static_prefix
from .local import LocalStore

CREDENTIAL_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")

_CAMEL = {
    "credentials_secret_ref": "credentialsSecretRef",
    "server_side_encryption": "serverSideEncryption",
    "endpoint": "endpoint",
}


def _field(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        if name in obj:
            return obj[name]
        camel = _CAMEL.get(name) or "".join(p if i == 0 else p.title() for i, p in enumerate(name.split("_")))
        return obj.get(camel)
    return getattr(obj, name, None)


def storage_configured(spec: Any) -> bool:
    """Whether a storage spec names a store (an empty ``backupStorage: {}`` does not)."""
    if spec is None:
        return False
    local = _field(spec, "local")
    return bool(_field(spec, "bucket") or (local is not None and _field(local, "path")))


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


def open_store(spec: Any, name: str, credentials: Mapping[str, str] | None, **kwargs: Any) -> Store | None:
    """The store a storage spec describes, named ``name`` ("primary"/"backup").

    Returns None for an empty spec (no bucket, no local path). ``credentials`` (AWS_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY, optional AWS_SESSION_TOKEN) come from the Secret named by
    ``credentialsSecretRef``; None means boto3's standard environment/credential chain. Extra keyword
    arguments go to the store (timeouts, ...). Raises StoreError(kind="config") for a spec that cannot work.
    """
    if not storage_configured(spec):
        return None
    key_prefix = static_prefix(_field(spec, "prefix"))
    local = _field(spec, "local")
    local_path = _field(local, "path") if local is not None else None
    bucket = _field(spec, "bucket")
    if local_path and bucket:
        raise StoreError(f"{name} store", "both a bucket and local.path are set: choose one", kind="config",
                         code="InvalidConfiguration")
    if local_path:
        return LocalStore(local_path, name=name, key_prefix=key_prefix, **kwargs)
    ref = _field(spec, "credentials_secret_ref")
    secret_name = _field(ref, "name") if ref is not None and not isinstance(ref, str) else ref
    from .s3 import S3Store

    return S3Store(
        bucket,
        name=name,
        region=_field(spec, "region"),
        endpoint_url=_field(spec, "endpoint"),
        credentials=credentials,
        server_side_encryption=_field(spec, "server_side_encryption") or None,
        key_prefix=key_prefix,
        credentials_secret=secret_name,
        **kwargs,
    )
