"""S3Store: any S3-compatible bucket through boto3 (AWS, MinIO, Ceph RGW, ...).

Requests have short timeouts and botocore retries only once: the Uploader does the real retrying, with
backoff and failover, and must learn quickly that a store is failing. Segments are uploaded with the
recorder's SHA-256 as ``x-amz-checksum-sha256``: the server refuses bytes that differ from what was recorded.

Write-once objects (``put_file``, ``put_bytes_once``: segments, MP4s; base.py) are conditional writes:
``PutObject`` with ``If-None-Match: *``, and for a multipart upload its ``CompleteMultipartUpload`` (added by an
event handler: boto3's transfer manager does not pass the header on). A 412 ``PreconditionFailed`` means an object
is there: accepted when it holds the same bytes (one HEAD; our own upload, retried after its answer was lost),
else ObjectExistsError. A server that answers 501 ``NotImplemented`` to the header (some S3-compatible ones) is
detected once, logged, and from then on the store looks before it writes (HEAD, then an unconditional PUT): a
race, since another writer may store the key between the two requests. Playlists and the manifest
(``put_bytes``) are rewritten on purpose while recording: unconditional.

Memory (a recorder pod's working set, issue 18; benchmarks/README.md, "Recorder memory"): the client is boto3's
S3 client, created through botocore's session, which is what ``boto3.client`` does; boto3's own package (its
resource API, the transfer manager with s3transfer and multiprocessing: ~2 MiB) is imported only for a multipart
upload (above MULTIPART_THRESHOLD: a long recording's MP4, the backfill's copies of one). pyOpenSSL is kept out of
botocore before botocore is first imported (``_keep_pyopenssl_out``: ~4 MiB, with cryptography).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import os
import sys
import threading
from collections.abc import Mapping
from pathlib import Path

from .base import CHUNK, ObjectInfo, Store
from .errors import StoreError
from .keys import content_type_for
from .s3_errors import DENIED_CODES, NOT_IMPLEMENTED_CODES, PRECONDITION_CODES, S3Errors


def _keep_pyopenssl_out() -> None:
    """botocore takes its SSLContext from urllib3's pyOpenSSL module whenever pyOpenSSL is installed (aiortc, for
    the WebRTC ingest, brings it into the recorder image): the same standard-library class, for ~4 MiB more
    anonymous memory (pyOpenSSL and cryptography). A None in sys.modules makes that import fail, and botocore then
    imports the class from urllib3 itself. botocore does this when ``botocore.httpsession`` is first imported
    (``botocore.config`` imports it too), so this runs at this module's import, before any (the modules it imports
    import no botocore)."""
    sys.modules.setdefault("urllib3.contrib.pyopenssl", None)


_keep_pyopenssl_out()

log = logging.getLogger("reel.storage")

MULTIPART_THRESHOLD = 64 * 1024 * 1024  # files above this use multipart (segments are far smaller)


def _transfer_config():
    """Multipart uploads with two parts of 8 MiB in flight: boto3's default (10 at once) holds ~80 MiB; this keeps a
    multi-GB MP4's upload (the recorder's, the backfill's) within ~20 MiB."""
    from boto3.s3.transfer import TransferConfig

    config = TransferConfig(multipart_threshold=MULTIPART_THRESHOLD, multipart_chunksize=8 * 1024 * 1024,
                            max_concurrency=2)
    config.max_in_memory_upload_chunks = 2  # s3transfer's; boto3's constructor does not take it (default 10)
    return config


def _sha256_of(f) -> str:
    """The SHA-256 of an open file, read from its start."""
    f.seek(0)
    h = hashlib.sha256()
    while chunk := f.read(CHUNK):
        h.update(chunk)
    return h.hexdigest()


_SESSION_LOCK = threading.Lock()
_SESSION = None


def _session(fresh_credentials: bool):
    """A botocore session sharing one data loader per process: the S3 model and endpoint rules are loaded once, and
    a backup store costs next to nothing more. With ``fresh_credentials`` the session is new, so the standard
    credential chain (environment, profile, instance role, web identity) is resolved now rather than reused from an
    earlier store. Clients are created as ``boto3.client`` creates them (``create_client``), without importing
    boto3's package (module docstring)."""
    global _SESSION
    _keep_pyopenssl_out()
    import botocore.session  # lazily: botocore is unused with a LocalStore

    if _SESSION is None:
        _SESSION = botocore.session.Session()
    if not fresh_credentials:
        return _SESSION
    core = botocore.session.Session()
    core.register_component("data_loader", _SESSION.get_component("data_loader"))
    return core


def _upload_multipart(client, f, bucket: str, key: str, extra_args: dict) -> None:
    """``upload_fileobj`` as boto3 injects it into its S3 clients: its transfer manager (s3transfer), with
    _transfer_config(); imported only here."""
    from boto3.s3.transfer import create_transfer_manager

    with create_transfer_manager(client, _transfer_config()) as manager:
        manager.upload(fileobj=f, bucket=bucket, key=key, extra_args=extra_args).result()


class S3Store(S3Errors, Store):
    def __init__(
        self,
        bucket: str,
        *,
        name: str = "primary",
        region: str | None = None,
        endpoint_url: str | None = None,
        credentials: Mapping[str, str] | None = None,
        server_side_encryption: str | None = None,
        kms_key_id: str | None = None,
        key_prefix: str = "",
        credentials_secret: str | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        max_attempts: int = 2,
        max_connections: int = 10,
        addressing_style: str | None = None,
    ) -> None:
        super().__init__(name, key_prefix)
        if not bucket:
            raise StoreError(f"{name} store", "no bucket configured (spec.storage.bucket)", kind="config",
                             code="InvalidBucketName")
        sse = str(server_side_encryption) if server_side_encryption else None  # reel_api gives a StrEnum
        if sse not in (None, "AES256", "aws:kms"):
            raise StoreError(f"{name} store s3://{bucket}", f"server-side encryption {sse!r} is not one of "
                             "'', 'AES256', 'aws:kms'", kind="config", code="InvalidEncryptionMethod")
        self.bucket = bucket
        self.endpoint_url = endpoint_url or None
        self.region = region or None
        self.sse = sse
        self.kms_key_id = kms_key_id
        self.credentials_secret = credentials_secret
        self._static_credentials = credentials is not None

        from botocore.config import Config

        session_kwargs = {}
        if credentials is not None:
            access = credentials.get("AWS_ACCESS_KEY_ID")
            secret = credentials.get("AWS_SECRET_ACCESS_KEY")
            if not access or not secret:
                missing = [k for k, v in (("AWS_ACCESS_KEY_ID", access), ("AWS_SECRET_ACCESS_KEY", secret))
                           if not v]
                raise self.error(f"credentials {self._where_credentials()} lack {' and '.join(missing)}",
                                 kind="config", code="InvalidAccessKeyId")
            session_kwargs = {"aws_access_key_id": access.strip(),
                              "aws_secret_access_key": secret.strip()}
            if credentials.get("AWS_SESSION_TOKEN"):
                session_kwargs["aws_session_token"] = credentials["AWS_SESSION_TOKEN"].strip()
        region_name = self.region or ("us-east-1" if self.endpoint_url else None)
        style = addressing_style or ("path" if self.endpoint_url else "auto")
        config = Config(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"total_max_attempts": max_attempts, "mode": "standard"},
            s3={"addressing_style": style},
            signature_version="s3v4",
            max_pool_connections=max_connections,
            tcp_keepalive=True,
            user_agent_extra="reel-recorder",
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        with _SESSION_LOCK:  # creating clients is not thread-safe; one session shares the loaded models
            self._client = _session(credentials is None).create_client(
                "s3", endpoint_url=self.endpoint_url, config=config, region_name=region_name, **session_kwargs)
        # Write-once objects (module docstring): None until the server answered a conditional write, False once it
        # answered 501 to If-None-Match (then: look before writing).
        self.conditional_writes: bool | None = None
        self._once_lock = threading.Lock()
        self._once_uploads: set[str] = set()  # keys of multipart uploads that complete only if absent
        self._client.meta.events.register("before-parameter-build.s3.CompleteMultipartUpload",
                                          self._complete_if_absent)

    # -- naming and errors ----------------------------------------------------------------------------------

    def describe(self) -> str:
        where = f"s3://{self.bucket}"
        if self.endpoint_url:
            return f"{where} @ {self.endpoint_url}"
        return f"{where} ({self.region})" if self.region else where

    def _sse_args(self) -> dict:
        if not self.sse:
            return {}
        args = {"ServerSideEncryption": self.sse}
        if self.sse == "aws:kms" and self.kms_key_id:
            args["SSEKMSKeyId"] = self.kms_key_id
        return args

    # -- Store API ------------------------------------------------------------------------------------------

    def check(self) -> None:
        """List one key under the prefix (proves credentials and bucket); when listing is not allowed, or
        with server-side encryption, write a tiny probe object instead (proves the write path)."""
        probe_write = bool(self.sse)
        try:
            self._client.list_objects_v2(Bucket=self.bucket, Prefix=self.key_prefix, MaxKeys=1)
        except Exception as e:
            err = self.translate(e, "check")
            if err.code not in DENIED_CODES:
                raise err from None
            probe_write = True  # may write without listing: find out by writing
        if probe_write:
            key = f"{self.key_prefix}.reel-write-check"
            try:
                self._client.put_object(Bucket=self.bucket, Key=key, Body=b"", ContentType="text/plain",
                                        **self._sse_args())
            except Exception as e:
                raise self.translate(e, "check (test write)") from None
            with contextlib.suppress(Exception):  # deleting is optional (write-only policies)
                self._client.delete_object(Bucket=self.bucket, Key=key)

    def put_file(self, key: str, path: Path, content_type: str | None = None, *,
                 sha256: str | None = None) -> None:
        """Written once (module docstring): conditional; the same bytes already there are accepted."""
        self.validate_key(key)
        ctype = content_type or content_type_for(key)
        try:
            size = os.stat(path).st_size
            f = open(path, "rb")  # noqa: SIM115
        except FileNotFoundError:
            raise self.error(f"{key!r}: source file {path} is missing", kind="object",
                             code="NoSuchFile") from None
        except OSError as e:
            raise self.error(f"{key!r}: cannot read {path}: {e}", kind="object", code="NoSuchFile") from None
        with f:
            def upload(if_absent: bool) -> None:
                f.seek(0)
                if size <= MULTIPART_THRESHOLD:
                    extra = {"IfNoneMatch": "*"} if if_absent else {}
                    if sha256:
                        extra["ChecksumSHA256"] = base64.b64encode(bytes.fromhex(sha256)).decode()
                    self._client.put_object(Bucket=self.bucket, Key=key, Body=f, ContentLength=size,
                                            ContentType=ctype, **extra, **self._sse_args())
                    return
                extra_args = {"ContentType": ctype, "ChecksumAlgorithm": "SHA256", **self._sse_args()}
                with self._once_lock:
                    if if_absent:
                        self._once_uploads.add(key)
                try:
                    _upload_multipart(self._client, f, self.bucket, key, extra_args)
                finally:
                    with self._once_lock:
                        self._once_uploads.discard(key)

            self._put_once(key, upload, size, lambda: sha256 or _sha256_of(f))

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        """Unconditional: playlists and the manifest are rewritten on purpose while recording."""
        self.validate_key(key)
        try:
            self._client.put_object(Bucket=self.bucket, Key=key, Body=bytes(data),
                                    ContentType=content_type or content_type_for(key), **self._sse_args())
        except Exception as e:
            raise self.translate(e, f"upload {key!r}") from None

    def put_bytes_once(self, key: str, data: bytes, content_type: str | None = None) -> None:
        self.validate_key(key)
        data = bytes(data)
        sha = hashlib.sha256(data).hexdigest()

        def upload(if_absent: bool) -> None:
            self._client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type or
                                    content_type_for(key), ChecksumSHA256=base64.b64encode(bytes.fromhex(sha)).decode(),
                                    **({"IfNoneMatch": "*"} if if_absent else {}), **self._sse_args())

        self._put_once(key, upload, len(data), lambda: sha)

    def _complete_if_absent(self, params, **_kwargs) -> None:
        """botocore event handler: a multipart upload of a write-once object completes only if the key is free."""
        with self._once_lock:
            if params.get("Key") in self._once_uploads:
                params["IfNoneMatch"] = "*"

    def _put_once(self, key: str, upload, size: int, sha256) -> None:
        """Store a write-once object with ``upload(if_absent)`` (module docstring). ``sha256()`` gives its SHA-256
        when an object is found there."""
        if self.conditional_writes is not False:
            try:
                upload(True)
                self.conditional_writes = True
                return
            except Exception as e:
                err = self.translate(e, f"upload {key!r}")
                if err.code in PRECONDITION_CODES:
                    self.accept_existing(key, size, sha256())
                    return
                if err.code not in NOT_IMPLEMENTED_CODES:
                    raise err from None
                # 501: the header, or (with server-side encryption) the encryption. Try once without the header.
                self._look_then_put(key, upload, size, sha256)
                if self.conditional_writes is not False:
                    self.conditional_writes = False
                    log.warning("%s does not support conditional writes (If-None-Match: *; it answered %s): "
                                "write-once objects are checked with a HEAD before they are written, which "
                                "another writer could race", self.label, err.code)
                return
        self._look_then_put(key, upload, size, sha256)

    def _look_then_put(self, key: str, upload, size: int, sha256) -> None:
        """The fallback for a server without conditional writes: HEAD, then an unconditional PUT (racy)."""
        try:
            self.stat(key)
        except StoreError as err:
            if err.code != "NoSuchKey":
                raise
            try:
                upload(False)
            except Exception as e:
                raise self.translate(e, f"upload {key!r}") from None
            return
        self.accept_existing(key, size, sha256())

    def get_bytes(self, key: str) -> bytes:
        self.validate_key(key)
        try:
            resp = self._client.get_object(Bucket=self.bucket, Key=key)
            with resp["Body"] as body:
                return body.read()
        except Exception as e:
            raise self.translate(e, f"read {key!r}") from None

    def exists(self, key: str) -> bool:
        self.validate_key(key)
        try:
            self._client.head_object(Bucket=self.bucket, Key=key)
        except Exception as e:
            err = self.translate(e, f"head {key!r}")
            if err.code == "NoSuchKey":
                return False
            raise err from None
        return True

    def list_keys(self, prefix: str) -> list[str]:
        if prefix:
            self.validate_key(prefix.rstrip("/"))
        keys: list[str] = []
        token = None
        try:
            while True:  # no paginator: trim_botocore keeps only the S3 model itself
                args = {"Bucket": self.bucket, "Prefix": prefix, **({"ContinuationToken": token} if token else {})}
                resp = self._client.list_objects_v2(**args)
                keys.extend(obj["Key"] for obj in resp.get("Contents") or [])
                token = resp.get("NextContinuationToken")
                if not resp.get("IsTruncated") or not token:
                    break
        except Exception as e:
            raise self.translate(e, f"list {prefix!r}") from None
        return sorted(keys)

    def head(self, key: str) -> dict:
        """The object's metadata (ContentType, ContentLength, ServerSideEncryption, ChecksumSHA256...)."""
        self.validate_key(key)
        try:
            return self._client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
        except Exception as e:
            raise self.translate(e, f"head {key!r}") from None

    def stat(self, key: str) -> ObjectInfo:
        """One HEAD (ChecksumMode ENABLED): the size, and the SHA-256 when the object was stored with a whole-object
        one (``put_file`` with ``sha256``: every segment and document up to MULTIPART_THRESHOLD); a multipart object
        has a checksum of its parts' checksums ("...-N"), which is not the object's: then None."""
        head = self.head(key)
        sha = None
        checksum = head.get("ChecksumSHA256") or ""
        if checksum and "-" not in checksum and head.get("ChecksumType", "FULL_OBJECT") == "FULL_OBJECT":
            try:
                sha = base64.b64decode(checksum).hex()
            except ValueError:
                sha = None
        return ObjectInfo(int(head.get("ContentLength") or 0), sha)

    def read_into(self, key: str, out) -> None:
        """GET, streamed into ``out`` by 1 MiB chunks (never the whole object in memory)."""
        self.validate_key(key)
        try:
            body = self._client.get_object(Bucket=self.bucket, Key=key)["Body"]
            try:
                for chunk in body.iter_chunks(CHUNK):
                    out.write(chunk)
            finally:
                body.close()
        except Exception as e:
            raise self.translate(e, f"read {key!r}") from None

    def delete(self, key: str) -> None:
        self.validate_key(key)
        try:
            self._client.delete_object(Bucket=self.bucket, Key=key)
        except Exception as e:
            raise self.translate(e, f"delete {key!r}") from None

    def close(self) -> None:
        self._client.close()
