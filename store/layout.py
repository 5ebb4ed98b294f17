"""What is written where: every object mailroom writes, built from fixed facts, without I/O.

Three prefixes, none inside another (checked at start): payloads under the data prefix and
nothing else there; dead letters (and, with PARTITION_INVALID=error, payloads whose partition
values are unusable) under the error prefix; the service's own objects (idempotency markers,
the start check's probe) under the state prefix.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from store.keys import ObjectKey
from store.markers import marker_object
from store.objects import S3Object, encode_batch, encode_document, encode_documents, encode_raw
from store.partitions import NONE, Partition, Partitioner

MISFITS = "partition_invalid/"  # under the error prefix, with PARTITION_INVALID=error
PROBE = "write-check"  # under the state prefix: the start check's object
# What a batch's rows are, asked only when they are needed (Parquet): ids and documents.
Rows = Callable[[], tuple[Sequence[str], Sequence[Any]]]


class Layout:
    """Keys and bodies for one bucket's prefixes, partitions and batch format."""

    def __init__(
        self,
        prefix: str,
        *,
        error_prefix: str = "errors/",
        state_prefix: str = "state/",
        partitioner: Partitioner | None = None,
        batch_format: str = "ndjson",
    ) -> None:
        self.prefix = prefix
        self.error_prefix = error_prefix
        self.state_prefix = state_prefix
        self.partitioner = partitioner or Partitioner(())
        self.batch_format = batch_format

    def partitions(self, documents: Sequence[Any]) -> list[Partition] | None:
        """Each document's partition (opaque to callers: group by it, hand it back); None
        when PARTITION_BY is unset and every payload of a collection shares one."""
        return self.partitioner.of_all(documents)

    def _base(self, partition: Partition) -> str:
        return self.error_prefix + MISFITS if partition.misfit else self.prefix

    def object_for(
        self,
        document: Any,
        *,
        version: str,
        received_at: float,
        unique: str,
        tenant: str | None = None,
    ) -> S3Object:
        """Encode one payload under its key; the same facts always give the same object."""
        partition = self.partitioner.of(document) if self.partitioner else NONE
        key = ObjectKey(
            self._base(partition),
            version,
            received_at,
            unique,
            tenant=tenant,
            partition=partition.segments,
        )
        return S3Object(str(key), encode_document(document))

    def batch_object(
        self,
        lines: list[bytes],
        *,
        version: str,
        received_at: float,
        unique: str,
        gzipped: bool,
        tenant: str | None = None,
        partition: Partition | None = None,
        rows: Rows | None = None,
    ) -> S3Object:
        """Many payloads of one partition in one object: NDJSON lines (gzipped if asked), or
        with BATCH_FORMAT=parquet one Parquet table built from `rows`."""
        if self.batch_format == "parquet":
            from store.parquet import encode_table  # pyarrow: imported only when used

            if rows is None:
                raise ValueError("a Parquet batch needs its rows")
            ids, documents = rows()
            body, suffix = encode_table(documents, ids), ".parquet"
        else:
            body = encode_batch(lines, gzipped=gzipped)
            suffix = ".ndjson.gz" if gzipped else ".ndjson"
        partition = partition or NONE
        key = ObjectKey(
            self._base(partition),
            version,
            received_at,
            unique,
            suffix,
            tenant=tenant,
            partition=partition.segments,
        )
        return S3Object(str(key), body, len(lines))

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

    def marker_object(self, marker: str, received_at: float) -> S3Object:
        """The idempotency marker claiming `received_at` (`store/markers.py`)."""
        return marker_object(self.state_prefix, marker, received_at)

    def probe_object(self) -> S3Object:
        """The start check's object: under the state prefix, so readers of the data never
        meet it (and no delete is needed, which a crash could skip)."""
        return S3Object(f"{self.state_prefix}{PROBE}", b"mailroom write check\n", payloads=0)

    def encode(self, document: Any) -> bytes:
        return encode_document(document)

    def encode_all(self, documents: Sequence[Any]) -> list[bytes]:
        return encode_documents(documents)
