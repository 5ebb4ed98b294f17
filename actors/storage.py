"""What the actors need from storage: an `S3Store` and a `DeadLetterSpool` in production,
fakes in tests. The actors see only these protocols, never boto3 or the file system."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Any, Protocol

from store import S3Object


class PayloadStore(Protocol):
    def encode(self, document: Any) -> bytes: ...

    def encode_all(self, documents: Sequence[Any]) -> list[bytes]:
        """Each document as `encode` would make it (one call for a collection's)."""
        ...

    def object_for(
        self,
        document: Any,
        *,
        version: str,
        received_at: float,
        unique: str,
        tenant: str | None = None,
    ) -> S3Object: ...

    def partitions(self, documents: Sequence[Any]) -> Sequence[Hashable] | None:
        """Each document's partition (PARTITION_BY), an opaque value to group batches by and
        hand back to `batch_object`; None when all of them share one."""
        ...

    def batch_object(
        self,
        lines: list[bytes],
        *,
        version: str,
        received_at: float,
        unique: str,
        gzipped: bool,
        tenant: str | None = None,
        partition: Hashable | None = None,
        rows: Callable[[], tuple[Sequence[str], Sequence[Any]]] | None = None,
    ) -> S3Object:
        """One object for many payloads; `rows` (their ids and documents) is asked for only
        by a format that needs them (Parquet)."""
        ...

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
    ) -> S3Object: ...

    def first_accepted(self, marker: str, received_at: float) -> float:
        """When the collection behind `marker` was first accepted, anywhere (S3 errors raise)."""
        ...

    def marker_object(self, marker: str, received_at: float) -> S3Object:
        """The marker claiming `received_at`, to spool with a collection not yet resolved."""
        ...

    def put(self, obj: S3Object) -> bool | None:
        """Store it; False if it was already there (a conditional write found it)."""
        ...


class Spool(Protocol):
    def write(self, objects: list[S3Object], *, reason: str) -> Path | None: ...
