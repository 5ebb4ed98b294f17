"""Getting one unit into S3 or, failing that, durably onto the spool; never dropping it.

Any exception from the S3 path is an S3 failure, not a crash: a failed put is retried with
exponential backoff and full jitter within a time budget, then the unit is written to the
dead-letter spool. If the spool cannot be written either (disk full, read-only), the unit stays
in memory and both are tried again, slower, until one works: the uploader stalls, its mailbox
fills, and new requests get 503 instead of being lost. Past the shutdown deadline nothing more
is attempted here: the drain's sweep spools whatever the ledger still owes, in one write.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from actors.drain import DrainBudget
from actors.ledger import Ledger
from actors.messages import Part, Payload, Unit
from actors.observer import ActorObserver, NoActorObserver
from actors.retry import Backoff, Deadline
from actors.storage import PayloadStore, Spool
from store import S3Object
from store.objects import encode_raw

log = logging.getLogger(__name__)

STALLED = Backoff(base=0.5, cap=5.0)  # between rounds once S3 and the spool both fail
UNENCODABLE = "unencodable/"  # key prefix for payloads whose encoding itself fails
UNREACHABLE_AFTER = 5.0  # seconds one unit keeps failing before S3 counts as unreachable


def describe(error: Exception) -> tuple[str, bool]:
    """Why a put failed, and whether a later attempt may succeed (unknown errors: yes)."""
    cause = getattr(error, "cause", None) or f"{type(error).__name__}: {error}"
    return str(cause), bool(getattr(error, "retryable", True))


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
    ) -> None:
        self.store = store
        self.budget = budget
        self.spool = spool
        self.ledger = ledger
        self.backoff = backoff
        self.deadline = deadline
        self.observer = observer or NoActorObserver()
        self.spool_error: str | None = None  # the last spool write's failure, None once one works
        self.s3_error: str | None = None  # the last put's failure, None once one lands

    def s3_checked(self, failure: str | None) -> None:
        """What a probe outside the uploads found (the start check, a recheck)."""
        self.s3_error = failure

    def deliver(self, unit: Unit, who: str) -> None:
        """Store one unit in S3 or on the spool (or leave it to the sweep past the deadline)."""
        objects = unit.to_objects(self.store)
        started = time.monotonic()
        failing_since: float | None = None
        attempt = 0
        while not self.deadline.passed():
            existed = False
            try:
                for obj in objects:
                    existed |= self.store.put(obj) is False  # already there: a repeat
            except Exception as error:  # whatever S3 or the client did, it is an S3 failure
                cause, retryable = describe(error)
                self.observer.upload_failed(retryable)
                now = time.monotonic()
                failing_since = failing_since or now
                if not retryable or now - failing_since >= UNREACHABLE_AFTER:
                    self.s3_error = cause  # not one slow or throttled put: S3 is failing us
                delay = self.backoff.delay(attempt)
                attempt += 1
                if retryable and now - failing_since + delay <= self.backoff.budget:
                    log.debug("%s: attempt %d failed (%s)", who, attempt, cause)
                    self.observer.upload_retried()
                    self.deadline.sleep(delay)
                    continue
                why = (
                    "S3 refused it" if not retryable else f"still failing after {attempt} attempts"
                )
                if self._spool(objects, unit.parts, f"{who}: {why} ({cause})", who):
                    return
                self.deadline.sleep(STALLED.delay(attempt))  # keep it; try S3, then the spool
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
                        unique=payload.idempotent_id or payload.id,
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
        if not units:
            return
        objects = [obj for unit in units for obj in self._spoolable(unit, who)]
        parts = [part for unit in units for part in unit.parts]
        attempt = 0
        while not self._spool(objects, parts, reason, who):
            if self.deadline.passed():
                return  # still owed in the ledger: the sweep takes them
            self.deadline.sleep(STALLED.delay(attempt))
            attempt += 1

    def _spoolable(self, unit: Unit, who: str) -> list[S3Object]:
        """The unit's objects; if even encoding it fails (a poison document), its raw form."""
        try:
            return unit.to_objects(self.store)
        except Exception as error:
            log.error(
                "%s: cannot encode unit %s (%s: %s); spooling its payloads raw under %s",
                who,
                unit.id,
                type(error).__name__,
                error,
                UNENCODABLE,
                extra={"event": "unencodable", "payload": unit.id},
            )
            return [
                S3Object(
                    f"{UNENCODABLE}{p.id}.json",
                    encode_raw(p.document).encode("utf-8", "backslashreplace"),
                )
                for p in unit.payloads
            ]

    def sweep(self, payloads: Sequence[Payload], reason: str, until: float) -> bool:
        """At the deadline: spool every payload still owed, one object each, in one write.

        Retries a failing spool until `until` (monotonic); returns whether it was written.
        """
        objects = [obj for payload in payloads for obj in self._spoolable(payload, "the sweep")]
        parts = [part for payload in payloads for part in payload.parts]
        attempt = 0
        while not self._spool(objects, parts, reason, "shutdown sweep"):
            delay = STALLED.delay(attempt)
            if time.monotonic() + delay >= until:
                return False
            time.sleep(delay)
            attempt += 1
        return True

    def _spool(self, objects: list[S3Object], parts: Sequence[Part], reason: str, who: str) -> bool:
        try:
            self.spool.write(objects, reason=reason)
        except Exception as error:
            self.spool_error = f"{type(error).__name__}: {error}"
            self.observer.spool_failed()
            log.error(
                "%s: cannot write %d payload(s) to the spool (%s); keeping them in memory and "
                "trying S3 and the spool again",
                who,
                _count(parts),
                self.spool_error,
                extra={"event": "spool_failed", "payloads": _count(parts), "error": reason},
            )
            return False
        self.spool_error = None
        self.observer.spooled(self.ledger.settle(parts, landed=False))
        return True


def _count(parts: Sequence[Part]) -> int:
    return sum(part.stop - part.start for part in parts)


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
