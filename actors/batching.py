"""Collecting payloads into batches: one S3 object for many payloads (BATCH_MAX_* settings).

Pure bookkeeping, no threads and no I/O: the uploader feeds it payloads and flushes what it
returns. A batch gets its id when it opens, so its key is fixed before the first attempt and
survives retries, a crash (the batch is handed over whole) and the spool.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from actors.ids import new_id
from actors.messages import Payload

if TYPE_CHECKING:
    from actors.storage import PayloadStore
    from store import S3Object

MAX_OPEN_BATCHES = 32  # per uploader: one per version; the oldest is flushed past this


@dataclass(frozen=True, slots=True)
class BatchLimits:
    max_payloads: int = 1
    max_bytes: int = 4 * 1024 * 1024
    max_wait: float = 1.0
    gzip: bool = False
    # Each line `{"id": ..., "payload": ...}` rather than the payload alone: the id is the
    # payload's (from its Idempotency-Key when it had one), the same in every object that holds
    # it, so a reader can drop a payload it has seen.
    line_ids: bool = False

    @property
    def enabled(self) -> bool:
        return self.max_payloads > 1


@dataclass(slots=True)
class Batch:
    """Payloads of one version on their way to one object, with their encoded lines.

    Filled by one uploader in its own thread; once it leaves `OpenBatches` it is a `Unit`
    like any payload and is never changed again.
    """

    id: str
    version: str
    received_at: float
    opened: float
    gzipped: bool = False
    tenant: str | None = None
    payloads: list[Payload] = field(default_factory=list)
    lines: list[bytes] = field(default_factory=list)
    size: int = 0

    @property
    def sealed(self) -> bool:
        return True

    def to_objects(self, store: PayloadStore) -> list[S3Object]:
        return [
            store.batch_object(
                self.lines,
                version=self.version,
                received_at=self.received_at,
                unique=self.id,
                gzipped=self.gzipped,
                tenant=self.tenant,
            )
        ]


class OpenBatches:
    """The batches an uploader is filling, one per tenant and version."""

    def __init__(self, limits: BatchLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self._limits = limits
        self._clock = clock
        self._open: dict[tuple[str | None, str], Batch] = {}

    def __len__(self) -> int:
        return len(self._open)

    def add(self, payload: Payload, line: bytes) -> tuple[Batch | None, list[Batch]]:
        """Add one payload; return (the batch it opened, if new) and the batches now full."""
        group = payload.group
        batch = self._open.get(group)
        opened = None
        sealed: list[Batch] = []
        if batch is not None and batch.size + len(line) + 1 > self._limits.max_bytes:
            sealed.append(self._open.pop(group))
            batch = None
        if batch is None:
            if len(self._open) >= MAX_OPEN_BATCHES:
                oldest = min(self._open.values(), key=lambda b: b.opened)
                sealed.append(self._open.pop((oldest.tenant, oldest.version)))
            batch = Batch(
                new_id(),
                payload.version,
                payload.received_at,
                self._clock(),
                self._limits.gzip,
                payload.tenant,
            )
            self._open[group] = opened = batch
        batch.payloads.append(payload)
        batch.lines.append(line)
        batch.size += len(line) + 1
        if len(batch.payloads) >= self._limits.max_payloads or batch.size >= self._limits.max_bytes:
            sealed.append(self._open.pop(group))
        return opened, sealed

    def take(self, batch_id: str) -> Batch | None:
        """The open batch with this id, removed (its wait is over), or None if already sealed."""
        for group, batch in self._open.items():
            if batch.id == batch_id:
                return self._open.pop(group)
        return None

    def take_all(self) -> list[Batch]:
        batches = list(self._open.values())
        self._open.clear()
        return batches
