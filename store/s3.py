"""Writing payloads to S3 with one shared, tuned boto3 client."""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson
from botocore.exceptions import BotoCoreError, ClientError

from store.direct_put import DirectPut, PutFailed, PutRejected
from store.keys import ObjectKey
from store.objects import S3Object, encode_batch, encode_document, encode_documents, encode_raw

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client  # pragma: no cover
else:
    S3Client = Any

CONTENT_TYPE = "application/octet-stream"
PUT_HEADERS = {"Content-Type": CONTENT_TYPE, "x-amz-acl": "private"}
CONNECT_TIMEOUT = 3
READ_TIMEOUT = 10


# Answers that mean "try again later" rather than "this request is wrong".
RETRYABLE_CODES = frozenset(
    {
        "SlowDown",
        "ServiceUnavailable",
        "InternalError",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "Throttling",
        "ConditionalRequestConflict",  # 409: a concurrent conditional write; try again
        "ThrottlingException",
        "500",
        "502",
        "503",
        "504",
    }
)


class StoreError(Exception):
    """A write failed after the client's own retries; says which key, why, and if retrying helps."""

    def __init__(self, key: str, cause: str, *, retryable: bool) -> None:
        super().__init__(f"S3 request for {key} failed: {cause}")
        self.key = key
        self.cause = cause
        self.retryable = retryable


class S3Store:
    """Puts payload documents into one bucket, one object each."""

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        prefix: str,
        direct: DirectPut | None = None,
        *,
        conditional_writes: bool = True,
        error_prefix: str = "errors/",
    ) -> None:
        self._client = client
        self._direct = direct
        self.bucket = bucket
        self.prefix = prefix
        self.conditional_writes = conditional_writes
        self.error_prefix = error_prefix

    def object_for(
        self,
        document: Any,
        *,
        version: str,
        received_at: float,
        unique: str,
        tenant: str | None = None,
        idempotent: bool = False,
    ) -> S3Object:
        """Encode one payload under its key; the same facts always give the same object."""
        key = ObjectKey(
            self.prefix, version, received_at, unique, tenant=tenant, idempotent=idempotent
        )
        return S3Object(str(key), encode_document(document))

    def error_object(
        self,
        document: Any,
        *,
        version: str,
        received_at: float,
        unique: str,
        tenant: str | None,
        error: str,
        attempts: int,
    ) -> S3Object:
        """A dead letter in S3: the payload as received, in an envelope saying what failed
        (as Firehose writes to its error prefix), under `S3_ERROR_PREFIX`."""
        key = ObjectKey(self.error_prefix, version, received_at, unique, tenant=tenant)
        envelope = {
            "error": error,
            "attempts": attempts,
            "failed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "received_at": received_at,
            "version": version,
            "tenant": tenant,
            "payload_id": unique,
            "raw": encode_raw(document),
        }
        return S3Object(str(key), orjson.dumps(envelope))

    def encode(self, document: Any) -> bytes:
        return encode_document(document)

    def encode_all(self, documents: Sequence[Any]) -> list[bytes]:
        return encode_documents(documents)

    def batch_object(
        self,
        lines: list[bytes],
        *,
        version: str,
        received_at: float,
        unique: str,
        gzipped: bool,
        tenant: str | None = None,
    ) -> S3Object:
        """Many payloads in one object: one JSON document per line, gzipped if asked."""
        suffix = ".ndjson.gz" if gzipped else ".ndjson"
        key = ObjectKey(self.prefix, version, received_at, unique, suffix, tenant=tenant)
        return S3Object(str(key), encode_batch(lines, gzipped=gzipped), len(lines))

    def put(self, obj: S3Object) -> bool:
        """Write one object: True if written, False if it was there already (conditional
        writes on: a retry, redelivery or replay of what landed overwrites nothing). Raises
        StoreError saying whether a later attempt may succeed."""
        if self._direct is not None:
            try:
                return self._direct.put(
                    obj.key, obj.body, PUT_HEADERS, if_absent=self.conditional_writes
                )
            except PutRejected as rejected:
                retryable = rejected.code in RETRYABLE_CODES or rejected.status >= 500
                raise StoreError(obj.key, str(rejected), retryable=retryable) from rejected
            except PutFailed as error:
                raise StoreError(obj.key, str(error), retryable=True) from error
        conditions = {"IfNoneMatch": "*"} if self.conditional_writes else {}
        try:
            answer = self._client.put_object(
                Bucket=self.bucket,
                Key=obj.key,
                Body=obj.body,
                ContentType=CONTENT_TYPE,
                ContentMD5=base64.b64encode(hashlib.md5(obj.body).digest()).decode(),
                ACL="private",
                **conditions,
            )
            if not answer.get("ETag"):  # not S3 having stored it: a proxy answering for it
                raise StoreError(obj.key, "S3 answered 200 without an ETag", retryable=True)
            return True
        except ClientError as error:
            details = error.response.get("Error", {})
            code = str(details.get("Code", "unknown"))
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if code == "PreconditionFailed" and self.conditional_writes:
                return False
            retryable = code in RETRYABLE_CODES or status >= 500
            raise StoreError(obj.key, f"S3 answered {code}", retryable=retryable) from error
        except BotoCoreError as error:
            # Connection refused or reset, timeouts, endpoint unreachable: all transient.
            raise StoreError(obj.key, str(error), retryable=True) from error

    def ensure_bucket(self) -> None:
        """Create the bucket if it is missing (used for the embedded store and tests)."""
        existing = {b["Name"] for b in self._client.list_buckets().get("Buckets", [])}
        if self.bucket not in existing:
            self._client.create_bucket(Bucket=self.bucket)

    def list_keys(self, limit: int | None = None) -> list[str]:
        """Every key under the prefix, oldest partition first (for `mailroom list` and tests)."""
        keys: list[str] = []
        paginator = self._client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
                for item in page.get("Contents", []):
                    keys.append(item["Key"])
                    if limit is not None and len(keys) >= limit:
                        return keys
        except (BotoCoreError, ClientError) as error:
            raise StoreError(
                f"s3://{self.bucket}/{self.prefix}", str(error), retryable=True
            ) from None
        return keys

    def read(self, key: str) -> bytes:
        try:
            return self._client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except (BotoCoreError, ClientError) as error:
            raise StoreError(key, str(error), retryable=True) from None
