"""Getting one unit into S3 or, failing that, durably onto the spool; never dropping it.

Any exception from the S3 path is an S3 failure, not a crash: a failed put (or marker read,
for a resend's first acceptance) is retried with exponential backoff and full jitter within a
time budget, then the unit is written to the dead-letter spool. If the spool cannot be
written either (disk full, read-only), the unit stays in memory and both are tried again,
slower, until one works: the uploader stalls, its mailbox fills, and new requests get 503
instead of being lost. Past the shutdown deadline nothing more is attempted here: the drain's
sweep spools whatever the ledger still owes, in one write.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from actors.drain import DrainBudget
from actors.first_seen import FirstSeen
from actors.ledger import Ledger
from actors.messages import Payload, Unit
from actors.observer import ActorObserver, NoActorObserver
from actors.retry import Backoff, Deadline
from actors.spooling import STALLED, Spooler
from actors.storage import PayloadStore, Spool
from store import S3Object

log = logging.getLogger(__name__)

UNREACHABLE_AFTER = 5.0  # seconds one unit keeps failing before S3 counts as unreachable


def describe(error: Exception) -> tuple[str, bool]:
    """Why a put failed, and whether a later attempt may succeed (unknown errors: yes)."""
    cause = getattr(error, "cause", None) or f"{type(error).__name__}: {error}"
    return str(cause), bool(getattr(error, "retryable", True))


@dataclass(slots=True)
class _Tries:
    """One unit's failed attempts so far."""

    attempt: int = 0
    failing_since: float | None = None


class Delivery:
    """Puts units, retrying; spools what S3 will not take; settles them in the ledger."""

    def __init__(
        self,
        store: PayloadStore,
        spool: Spool,
        ledger: Ledger,
        *,
        backoff: Backoff,
        deadline: Deadline,
        observer: ActorObserver | None = None,
        budget: DrainBudget | None = None,
        first_seen: FirstSeen | None = None,
    ) -> None:
        self.store = store
        self.budget = budget
        self.ledger = ledger
        self.backoff = backoff
        self.deadline = deadline
        self.observer = observer or NoActorObserver()
        # With one object per payload: resends are stored at their first acceptance's time.
        self.first_seen = first_seen
        self.spooler = Spooler(store, spool, ledger, self.observer, first_seen)
        self.s3_error: str | None = None  # the last put's failure, None once one lands

    @property
    def spool_error(self) -> str | None:
        """The last spool write's failure, None once one works."""
        return self.spooler.error

    def s3_checked(self, failure: str | None) -> None:
        """What a probe outside the uploads found (the start check, a recheck)."""
        self.s3_error = failure

    def deliver(self, unit: Unit, who: str) -> None:
        """Store one unit in S3 or on the spool (or leave it to the sweep past the deadline)."""
        first_seen = self.first_seen
        pending = first_seen is not None and any(p.collection.idempotency for p in unit.parts)
        objects = [] if pending else unit.to_objects(self.store)
        started = time.monotonic()
        tries = _Tries()
        while not self.deadline.passed():
            if pending and first_seen is not None:
                try:
                    unit = first_seen.resolve(unit)  # a resend: its first acceptance's keys
                except Exception as error:  # S3 failing to write or read the marker
                    if self._failed(error, tries, unit, None, who):
                        return
                    continue
                pending = False
                objects = unit.to_objects(self.store)  # outside the try: a bug crashes here
            existed = False
            try:
                for obj in objects:
                    existed |= self.store.put(obj) is False  # already there: a repeat
            except Exception as error:  # whatever S3 or the client did, it is an S3 failure
                if self._failed(error, tries, unit, objects, who):
                    return
                continue
            self.s3_error = None
            payloads = self.ledger.settle(
                unit.parts, landed=True, locations=_locations(unit, objects), existed=existed
            )
            seconds = time.monotonic() - started
            self.observer.uploaded(payloads, seconds, unit.sealed)
            if self.budget is not None:
                self.budget.record(unit.size, seconds)
            return

    def _failed(
        self,
        error: Exception,
        tries: _Tries,
        unit: Unit,
        objects: list[S3Object] | None,
        who: str,
    ) -> bool:
        """After a failed attempt: wait to retry (False), or spool the unit (True if done)."""
        cause, retryable = describe(error)
        self.observer.upload_failed(retryable)
        now = time.monotonic()
        failing_since = tries.failing_since = tries.failing_since or now
        if not retryable or now - failing_since >= UNREACHABLE_AFTER:
            self.s3_error = cause  # not one slow or throttled put: S3 is failing us
        delay = self.backoff.delay(tries.attempt)
        tries.attempt += 1
        if retryable and now - failing_since + delay <= self.backoff.budget:
            log.debug("%s: attempt %d failed (%s)", who, tries.attempt, cause)
            self.observer.upload_retried()
            self.deadline.sleep(delay)
            return False
        why = "S3 refused it" if not retryable else f"still failing after {tries.attempt} attempts"
        if objects is None:  # its first acceptance unresolved: its marker goes with it
            objects = self.spooler.objects(unit, who)
        if self.spooler.write(objects, unit.parts, f"{who}: {why} ({cause})", who):
            return True
        self.deadline.sleep(STALLED.delay(tries.attempt))  # keep it; try S3, then the spool
        return False

    def poisoned(self, unit: Unit, reason: str, attempts: int, who: str) -> None:
        """A unit that crashed `attempts` behaviours: each payload to S3's error prefix in an
        envelope saying why (durable beyond this machine's disk); to the spool if S3 will not
        take them."""
        try:
            for payload in unit.payloads:
                self.store.put(
                    self.store.error_object(
                        payload.document,
                        version=payload.version,
                        received_at=payload.received_at,
                        unique=payload.unique,
                        tenant=payload.tenant,
                        error=reason,
                        attempts=attempts,
                    )
                )
        except Exception as error:
            log.warning(
                "%s: cannot write the dead letters of unit %s to S3 (%s: %s); spooling them",
                who,
                unit.id,
                type(error).__name__,
                error,
            )
            self.dead_letter([unit], reason, who)
            return
        self.ledger.settle(unit.parts, landed=False)
        log.error(
            "%s: unit %s: %d payload(s) written to S3's error prefix with why (%s)",
            who,
            unit.id,
            unit.size,
            reason,
            extra={"event": "dead_lettered", "payload": unit.id, "payloads": unit.size},
        )

    def dead_letter(self, units: Sequence[Unit], reason: str, who: str) -> None:
        """Straight to the spool (poison, or a tree that gave up); kept and retried if it fails."""
        self.spooler.dead_letter(units, reason, who, self.deadline)

    def sweep(self, payloads: Sequence[Payload], reason: str, until: float) -> bool:
        """At the deadline: spool every payload still owed, in one write (`Spooler.sweep`)."""
        return self.spooler.sweep(payloads, reason, until)


def _locations(unit: Unit, objects: list[S3Object]) -> list[tuple[str, int | None]] | None:
    """Where each of the unit's parts now is: its object's key, and the line of its first
    payload when the object is a batch (None: a payload stored alone)."""
    if len(objects) != 1:
        return None
    key = objects[0].key
    if not unit.sealed:  # a payload stored alone
        return [(key, None)]
    locations: list[tuple[str, int | None]] = []
    line = 1
    for part in unit.parts:
        locations.append((key, line))
        line += part.stop - part.start
    return locations
