"""Writing to S3 with one shared, tuned boto3 client (what to write: `store/layout.py`)."""

from __future__ import annotations

import base64
import hashlib
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from store.direct_put import DirectPut, PutFailed, PutRejected
from store.layout import Layout
from store.markers import read_marker
from store.objects import S3Object
from store.partitions import Partitioner

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


class S3Store(Layout):
    """Writes the objects its layout builds to one bucket, and reads back what it must."""

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        prefix: str,
        direct: DirectPut | None = None,
        *,
        conditional_writes: bool = True,
        error_prefix: str = "errors/",
        state_prefix: str = "state/",
        partitioner: Partitioner | None = None,
        batch_format: str = "ndjson",
    ) -> None:
        super().__init__(
            prefix,
            error_prefix=error_prefix,
            state_prefix=state_prefix,
            partitioner=partitioner,
            batch_format=batch_format,
        )
        self._client = client
        self._direct = direct
        self.bucket = bucket
        self.conditional_writes = conditional_writes

    def first_accepted(self, marker: str, received_at: float) -> float:
        """When the collection behind `marker` was first accepted, by any process anywhere:
        `received_at` if this call is the first to claim it, else the time its marker holds.

        With conditional writes the claim is one `If-None-Match: *` PUT (a read only when it
        was there already), so two senders racing agree. Without them it is a read, then a
        write if nothing was there: two senders within that gap may each keep their own time.
        Raises StoreError (retryable) like any write.
        """
        claim = self.marker_object(marker, received_at)
        for _ in range(2):  # a marker expired between our write and our read: claim again
            if self.conditional_writes:
                if self.put(claim):
                    return received_at
                body = self.read_optional(claim.key)
            else:
                body = self.read_optional(claim.key)
                if body is None:
                    self.put(claim)
                    return received_at
            if body is not None:
                found = read_marker(claim.key, body)
                return received_at if found is None else found
        raise StoreError(
            claim.key, "the marker vanished between its write and its read", retryable=True
        )

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

    def read_optional(self, key: str) -> bytes | None:
        """The object's body, or None if there is none; StoreError if S3 cannot say."""
        try:
            return self._client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise StoreError(key, f"S3 answered {error}", retryable=True) from error
        except BotoCoreError as error:
            raise StoreError(key, str(error), retryable=True) from error

    def read(self, key: str) -> bytes:
        try:
            return self._client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except (BotoCoreError, ClientError) as error:
            raise StoreError(key, str(error), retryable=True) from None
