"""Composition root: builds the store and the actor system from Settings, in one place."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from config import Settings
from store import S3Store, open_s3
from store.embedded import EMBEDDED_BUCKET, EMBEDDED_CREDENTIALS, EMBEDDED_REGION, EmbeddedS3
from store.partitions import Partitioner
from store.spool import DeadLetterSpool, Destination

log = logging.getLogger(__name__)


@dataclass
class StoreHandle:
    """The store, plus the embedded server behind it when there is one (to stop it later)."""

    store: S3Store
    embedded: EmbeddedS3 | None = None  # the embedded server, if this process started it
    endpoint: str | None = None
    is_embedded: bool = False

    def close(self) -> None:
        if self.embedded is not None:
            self.embedded.stop()

    def describe(self) -> str:
        where = f"s3://{self.store.bucket}/{self.store.prefix}"
        if self.is_embedded:
            return f"{where} in the embedded S3 store at {self.endpoint} (in memory, gone at exit)"
        return f"{where} at {self.endpoint or 'AWS S3'}"


def open_store(
    settings: Settings, *, start_embedded: bool, connections: int | None = None
) -> StoreHandle:
    """Connect to the configured bucket, or to the embedded store when none is configured.

    `start_embedded` is False for commands that talk to an already running service's store;
    `connections` sizes the connection pool (default: one per uploader).
    """
    pool_size = max(connections or 0, settings.max_workers)
    layout = {
        "conditional_writes": settings.s3_conditional_writes,
        "error_prefix": settings.s3_error_prefix,
        "state_prefix": settings.s3_state_prefix,
        "partitioner": Partitioner(
            settings.partition_by, invalid_to_errors=settings.partition_invalid == "error"
        ),
        "batch_format": settings.batch_format,
    }
    if not settings.uses_embedded_store:
        store = open_s3(
            bucket=settings.s3_bucket or "",
            prefix=settings.s3_prefix,
            pool_size=pool_size,
            endpoint_url=settings.s3_endpoint_url,
            direct_put=settings.s3_put == "direct",
            **layout,
        )
        return StoreHandle(store, endpoint=settings.s3_endpoint_url)
    embedded = EmbeddedS3(settings.embedded_s3_port)
    if start_embedded:
        embedded.start()
    store = open_s3(
        bucket=EMBEDDED_BUCKET,
        prefix=settings.s3_prefix,
        pool_size=pool_size,
        endpoint_url=embedded.endpoint_url,
        credentials=EMBEDDED_CREDENTIALS,
        region=EMBEDDED_REGION,
        direct_put=settings.s3_put == "direct",
        **layout,
    )
    if start_embedded:
        store.ensure_bucket()
    return StoreHandle(
        store, embedded if start_embedded else None, embedded.endpoint_url, is_embedded=True
    )


def destination_of(settings: Settings) -> Destination:
    """Where this configuration uploads: what its spool files record, and replay checks."""
    if settings.uses_embedded_store:
        return Destination("embedded", EMBEDDED_BUCKET, settings.s3_prefix)
    endpoint = (settings.s3_endpoint_url or "aws").rstrip("/")
    return Destination(endpoint, settings.s3_bucket or "", settings.s3_prefix)


def open_spool(settings: Settings, *, any_destination: bool = False) -> DeadLetterSpool:
    return DeadLetterSpool(
        settings.spool_dir, destination_of(settings), any_destination=any_destination
    )
