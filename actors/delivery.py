"""Getting one unit (a payload or a batch) into S3, or failing that, onto the spool.

S3 trouble is not a crash: a failed put is retried with exponential backoff and full jitter
within a time budget, then written to the dead-letter spool. At shutdown the deadline cuts
retries short so everything is spooled in time.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

from actors.batching import Batch
from actors.messages import Payload
from actors.observer import ActorObserver, NoActorObserver
from actors.retry import Backoff, Deadline
from store import S3Object, StoreError

log = logging.getLogger(__name__)

Unit = Payload | Batch


class PayloadStore(Protocol):
    """What the actors need from storage (an `S3Store` in production, a fake in tests)."""

    def encode(self, document: Any) -> bytes: ...

    def object_for(
        self, document: Any, *, version: str, received_at: float, unique: str
    ) -> S3Object: ...

    def batch_object(
        self, lines: list[bytes], *, version: str, received_at: float, unique: str, gzipped: bool
    ) -> S3Object: ...

    def put(self, obj: S3Object) -> None: ...


class Spool(Protocol):
    def write(self, objects: list[S3Object], *, reason: str) -> Any: ...


def payloads_of(unit: Unit) -> list[Payload]:
    return unit.payloads if isinstance(unit, Batch) else [unit]


class Delivery:
    """Turns units into S3 objects and puts them, retrying, spooling, settling receipts."""

    def __init__(
        self,
        store: PayloadStore,
        spool: Spool,
        *,
        backoff: Backoff,
        deadline: Deadline,
        gzipped: bool = False,
        observer: ActorObserver | None = None,
    ) -> None:
        self.store = store
        self.spool = spool
        self.backoff = backoff
        self.deadline = deadline
        self.gzipped = gzipped
        self.observer = observer or NoActorObserver()

    def object_for(self, unit: Unit) -> S3Object:
        if isinstance(unit, Batch):
            return self.store.batch_object(
                unit.lines,
                version=unit.version,
                received_at=unit.received_at,
                unique=unit.id,
                gzipped=self.gzipped,
            )
        return self.store.object_for(
            unit.document, version=unit.version, received_at=unit.received_at, unique=unit.id
        )

    def deliver(self, unit: Unit, who: str) -> bool:
        """Store one unit; True if it landed, False if it went to the spool."""
        obj = self.object_for(unit)
        started = time.monotonic()
        landed = self._put_or_spool(obj, who)
        if landed:
            self.observer.uploaded(
                obj.payloads, time.monotonic() - started, isinstance(unit, Batch)
            )
        else:
            self.observer.spooled(obj.payloads)
        settle([unit], landed=landed)
        return landed

    def dead_letter(self, units: list[Unit], reason: str) -> None:
        """Write units straight to the spool (their keys fixed as ever) and settle receipts."""
        if not units:
            return
        objects = [self.object_for(u) for u in units]
        self.spool.write(objects, reason=reason)
        self.observer.spooled(sum(obj.payloads for obj in objects))
        settle(units, landed=False)

    def _put_or_spool(self, obj: S3Object, who: str) -> bool:
        started = time.monotonic()
        attempt = 0
        while True:
            if self.deadline.passed():
                self.spool.write([obj], reason=f"{who}: shutting down, no time left to upload")
                return False
            try:
                self.store.put(obj)
                return True
            except StoreError as error:
                self.observer.upload_failed(error.retryable)
                elapsed = time.monotonic() - started
                delay = self.backoff.delay(attempt)
                if not error.retryable:
                    reason = f"S3 refused it ({error.cause}); retrying would not help"
                elif elapsed + delay > self.backoff.budget:
                    reason = (
                        f"still failing after {attempt + 1} attempts in {elapsed:.1f}s "
                        f"({error.cause})"
                    )
                else:
                    log.debug("%s: attempt %d failed (%s)", who, attempt + 1, error.cause)
                    self.deadline.changed.wait(min(delay, self.deadline.remaining()))
                    self.observer.upload_retried()
                    attempt += 1
                    continue
                self.spool.write([obj], reason=f"{who}: {reason}")
                return False


def settle(units: list[Unit], *, landed: bool) -> None:
    for unit in units:
        for payload in payloads_of(unit):
            if payload.receipt is not None:
                payload.receipt.record(landed=landed)
