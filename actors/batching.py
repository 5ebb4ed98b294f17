"""Collecting payloads into batches: one S3 object for many payloads (BATCH_MAX_* settings).

Pure bookkeeping, no threads and no I/O: the uploader feeds it the encoded lines of a
collection's payloads and flushes what it returns. A batch gets its id when it opens, so its
key is fixed before the first attempt and survives retries, a crash (the batch is handed over
whole) and the spool.

A batch holds payloads that share a key prefix: tenant, version, the hour they were accepted
in (so each keeps the `dt=`/`hour=` partition of its own acceptance) and their PARTITION_BY
partition. At most MAX_OPEN_BATCHES are open at once, however many partitions a client makes
up: past that the oldest is sealed and written, so memory stays bounded (and objects small).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from actors.ids import new_id
from actors.messages import Collection, Part, Payload
from store.keys import time_partition

if TYPE_CHECKING:
    from actors.storage import PayloadStore
    from store import S3Object

MAX_OPEN_BATCHES = 32  # per uploader: one per group; the oldest is flushed past this

# What the payloads of one batch share: tenant, version, the key's time partition, partition.
Group = tuple[str | None, str, int, Hashable]


def group_of(collection: Collection, partition: Hashable) -> Group:
    when = time_partition(collection.received_at)
    return (collection.tenant, collection.version, when, partition)


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
    """Payloads of one group on their way to one object, with their lines.

    Filled by one uploader in its own thread; once it leaves `OpenBatches` it is a `Unit`
    like any payload and is never changed again. `parts` say which payloads of which
    collections its lines are, in order.
    """

    id: str
    version: str
    received_at: float
    opened: float
    gzipped: bool = False
    tenant: str | None = None
    partition: Hashable = None  # the store's, opaque here; None: no PARTITION_BY
    group: Group | None = None
    parts: list[Part] = field(default_factory=list)
    lines: list[bytes] = field(default_factory=list)
    nbytes: int = 0

    @property
    def size(self) -> int:
        return len(self.lines)

    @property
    def payloads(self) -> list[Payload]:
        return [Payload(c, index) for c, start, stop in self.parts for index in range(start, stop)]

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
                partition=self.partition,
                rows=self.rows,
            )
        ]

    def rows(self) -> tuple[list[str], list[Any]]:
        """Each payload's id (as BATCH_LINE_IDS writes it) and document, in line order."""
        payloads = self.payloads
        return [p.unique for p in payloads], [p.document for p in payloads]

    def retimed(self, when: Callable[[Collection], float]) -> Batch:
        return self  # its key was fixed when it opened


class OpenBatches:
    """The batches an uploader is filling, one per group (at most MAX_OPEN_BATCHES)."""

    def __init__(self, limits: BatchLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self._limits = limits
        self._clock = clock
        self._open: dict[Group, Batch] = {}

    def __len__(self) -> int:
        return len(self._open)

    def add(
        self,
        collection: Collection,
        start: int,
        lines: Sequence[bytes],
        partition: Hashable = None,
    ) -> tuple[list[Batch], list[Batch]]:
        """Add the lines of payloads start.. of a collection, all of one partition; return the
        batches this opened and the batches now full (a collection may fill one batch and
        open the next)."""
        limits = self._limits
        group = group_of(collection, partition)
        opened: list[Batch] = []
        sealed: list[Batch] = []
        batch = self._open.get(group)
        if batch is not None:  # the common case: all of it fits in the open batch
            grown = batch.nbytes + sum(map(len, lines)) + len(lines)
            if len(batch.lines) + len(lines) < limits.max_payloads and grown < limits.max_bytes:
                batch.lines += lines
                batch.parts.append(Part(collection, start, start + len(lines)))
                batch.nbytes = grown
                return opened, sealed
        done, end = 0, len(lines)
        while done < end:
            batch = self._open.get(group)
            if batch is None:
                batch = self._new(collection, group, sealed)
                opened.append(batch)
            taken, nbytes = 0, batch.nbytes
            room = limits.max_payloads - len(batch.lines)
            while taken < room and done + taken < end:
                grown = nbytes + len(lines[done + taken]) + 1
                if grown > limits.max_bytes and (batch.lines or taken):
                    break  # a line larger than a batch still gets a batch of its own
                nbytes = grown
                taken += 1
            if taken:
                batch.lines.extend(lines[done : done + taken])
                batch.parts.append(Part(collection, start + done, start + done + taken))
                batch.nbytes = nbytes
                done += taken
            if not taken or len(batch.lines) >= limits.max_payloads or nbytes >= limits.max_bytes:
                sealed.append(self._open.pop(group))
        return opened, sealed

    def _new(self, collection: Collection, group: Group, sealed: list[Batch]) -> Batch:
        if len(self._open) >= MAX_OPEN_BATCHES:
            oldest = min(self._open.values(), key=lambda b: b.opened)
            sealed.append(self._open.pop(oldest.group))
        batch = self._open[group] = Batch(
            new_id(),
            collection.version,
            collection.received_at,
            self._clock(),
            self._limits.gzip,
            collection.tenant,
            group[3],
            group,
        )
        return batch

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
