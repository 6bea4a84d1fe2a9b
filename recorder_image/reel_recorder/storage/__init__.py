"""Storage for recordings: where segments, playlists and manifests go.

- :class:`LocalStore` — a directory; :class:`S3Store` — any S3-compatible bucket (boto3, imported lazily).
- :func:`open_store` — a store from a RecordingSession ``spec.storage`` / ``spec.backupStorage``.
- :class:`Uploader` — uploads while recording, fails over to the backup store, backfills, reports progress.
"""

from .base import Store, sha256_file
from .errors import InvalidKeyError, ObjectExistsError, StoreError
from .factory import credentials_from_dir, open_store, storage_configured
from .keys import content_type_for, key_problem, static_prefix
from .local import LocalStore
from .uploader import Uploader, UploadProgress, UploadResult

__all__ = [
    "InvalidKeyError",
    "LocalStore",
    "ObjectExistsError",
    "S3Store",
    "Store",
    "StoreError",
    "UploadProgress",
    "UploadResult",
    "Uploader",
    "content_type_for",
    "credentials_from_dir",
    "key_problem",
    "open_store",
    "sha256_file",
    "static_prefix",
    "storage_configured",
]


def __getattr__(name: str):
    if name == "S3Store":  # boto3 costs ~20 MiB of RSS: import it only when an S3 store is used
        from .s3 import S3Store

        return S3Store
    raise AttributeError(name)
