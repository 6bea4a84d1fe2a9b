"""How S3 errors read: a botocore/boto3 exception → a StoreError with its kind (config, object, transient) and
a message that says what to fix (the credentials Secret, the bucket, the region, the encryption), used by
S3Store (s3.py) through this mixin. The error codes S3 and S3-compatible servers send are grouped here.

The mixin reads the store's ``bucket``, ``region``, ``sse``, ``key_prefix``, ``credentials_secret`` and
``_static_credentials`` and builds errors with its ``error``.
"""

from __future__ import annotations

from .errors import StoreError

CREDENTIAL_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken",
                     "TokenRefreshRequired", "InvalidSecurity", "InvalidClientTokenId",
                     "AuthorizationHeaderMalformed"}
DENIED_CODES = {"AccessDenied", "AllAccessDisabled", "AccountProblem", "Forbidden", "403"}
BUCKET_CODES = {"NoSuchBucket", "InvalidBucketName", "PermanentRedirect",
                 "IllegalLocationConstraintException"}
OBJECT_CODES = {"BadDigest", "InvalidDigest", "XAmzContentChecksumMismatch", "XAmzContentSHA256Mismatch",
                 "EntityTooLarge", "KeyTooLongError", "InvalidObjectName", "NoSuchKey", "404"}
PRECONDITION_CODES = {"PreconditionFailed", "412"}
NOT_IMPLEMENTED_CODES = {"NotImplemented", "501"}
SSE_CODES = {"NotImplemented", "InvalidEncryptionAlgorithmError", "InvalidArgument", "KMSNotConfigured",
              "InvalidEncryptionMethod", "kms.NotFoundException"}


class S3Errors:
    """The S3Store's error translation (a mixin: S3Store(S3Errors, Store))."""

    def _where_credentials(self) -> str:
        if self.credentials_secret:
            return f"from Secret {self.credentials_secret!r}"
        if self._static_credentials:
            return "given to the recorder"
        return "from the AWS environment/credential chain"

    def _credentials_hint(self) -> str:
        if self.credentials_secret:
            return (f"check the credentials Secret {self.credentials_secret!r} (keys AWS_ACCESS_KEY_ID, "
                    "AWS_SECRET_ACCESS_KEY)")
        if self._static_credentials:
            return "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY in the credentials folder"
        return ("check the AWS credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE, "
                "instance role) or set credentialsSecretRef")

    def translate(self, exc: BaseException, what: str = "") -> StoreError:
        """A StoreError for a botocore/boto3 exception, with its kind decided."""
        from botocore import exceptions as bx

        pre = f"{what}: " if what else ""
        if isinstance(exc, StoreError):
            return exc
        if isinstance(exc, bx.NoCredentialsError | bx.PartialCredentialsError):
            return self.error(f"{pre}no usable credentials ({type(exc).__name__}): "
                              f"{self._credentials_hint()}", kind="config", code="NoCredentials")
        if isinstance(exc, bx.ClientError):
            err = exc.response.get("Error", {}) or {}
            code = str(err.get("Code") or "")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            message = err.get("Message") or ""
            if not code and status:
                code = str(status)
            detail = f" - {message}" if message and message not in code else ""
            if code in CREDENTIAL_CODES:
                return self.error(f"{pre}access denied ({code}): {self._credentials_hint()}", kind="config",
                                  code=code)
            if code in DENIED_CODES:
                return self.error(f"{pre}access denied ({code}): the credentials {self._where_credentials()} "
                                  f"may not write to bucket {self.bucket!r}{self._prefix_text()}; "
                                  "grant s3:PutObject (and s3:GetObject, s3:ListBucket for backfill)",
                                  kind="config", code=code)
            if code in BUCKET_CODES:
                if code == "NoSuchBucket":
                    why = f"bucket {self.bucket!r} does not exist: create it or fix the bucket name"
                elif code == "PermanentRedirect":
                    why = f"bucket {self.bucket!r} is in another region than {self.region!r}: fix the region"
                else:
                    why = f"bucket {self.bucket!r} is not usable ({code}){detail}"
                return self.error(f"{pre}{why}", kind="config", code=code)
            if self.sse and (code in SSE_CODES or code.startswith("KMS")):
                return self.error(f"{pre}server-side encryption {self.sse!r} refused ({code}){detail}: the "
                                  "server needs a KMS, or set serverSideEncryption to ''",
                                  kind="config", code=code)
            if code in OBJECT_CODES:
                kind = "object"
                if code in ("BadDigest", "XAmzContentChecksumMismatch", "XAmzContentSHA256Mismatch",
                            "InvalidDigest"):
                    return self.error(f"{pre}content does not match its checksum ({code}){detail}",
                                      kind=kind, code=code)
                if code in ("NoSuchKey", "404"):
                    return self.error(f"{pre}no such object", kind=kind, code="NoSuchKey")
                return self.error(f"{pre}object refused ({code}){detail}", kind=kind, code=code)
            return self.error(f"{pre}server error ({code}{f', HTTP {status}' if status else ''}){detail}",
                              kind="transient", code=code)
        if isinstance(exc, bx.EndpointConnectionError | bx.ConnectTimeoutError):
            return self.error(f"{pre}cannot connect ({type(exc).__name__}): is the endpoint reachable?",
                              kind="transient", code="ConnectionError")
        if isinstance(exc, bx.ReadTimeoutError):
            return self.error(f"{pre}no answer within the read timeout", kind="transient", code="ReadTimeout")
        if isinstance(exc, bx.BotoCoreError | OSError):
            return self.error(f"{pre}{type(exc).__name__}: {exc}", kind="transient", code=type(exc).__name__)
        return self.error(f"{pre}{type(exc).__name__}: {exc}", kind="transient", code=type(exc).__name__)

    def _prefix_text(self) -> str:
        return f" under {self.key_prefix!r}" if self.key_prefix else ""
