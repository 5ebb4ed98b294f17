"""Putting units on the dead-letter spool when S3 will not take them, and settling them there.

Spooled objects carry their final keys, so a replay writes exactly what an upload would have.
A unit whose first acceptance was never resolved (S3 failing from the start) is spooled at
its own acceptance, with its idempotency marker beside it: replayed, the marker claims that
time for resends to come.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from actors.first_seen import FirstSeen
from actors.ledger import Ledger
from actors.messages import Part, Payload, Unit
from actors.observer import ActorObserver
from actors.retry import Backoff, Deadline
from actors.storage import PayloadStore, Spool
from store import S3Object
from store.objects import encode_raw

log = logging.getLogger(__name__)

STALLED = Backoff(base=0.5, cap=5.0)  # between rounds once S3 and the spool both fail
UNENCODABLE = "unencodable/"  # key prefix for payloads whose encoding itself fails


class Spooler:
    """Writes units' objects to the spool and settles them in the ledger as spooled."""

    def __init__(
        self,
        store: PayloadStore,
        spool: Spool,
        ledger: Ledger,
        observer: ActorObserver,
        first_seen: FirstSeen | None,
    ) -> None:
        self.store = store
        self.spool = spool
        self.ledger = ledger
        self.observer = observer
        self.first_seen = first_seen
        self.error: str | None = None  # the last spool write's failure, None once one works

    def objects(self, unit: Unit, who: str) -> list[S3Object]:
        """The unit's objects at what is known of its first acceptance (markers of what is
        not known beside them); if even encoding it fails (a poison document), its raw form."""
        try:
            markers: list[S3Object] = []
            if self.first_seen is not None:
                unit, markers = self.first_seen.known(unit)
            return unit.to_objects(self.store) + markers
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

    def dead_letter(self, units: Sequence[Unit], reason: str, who: str, deadline: Deadline) -> None:
        """Straight to the spool (poison, or a tree that gave up); kept and retried if it fails."""
        if not units:
            return
        objects = _once([obj for unit in units for obj in self.objects(unit, who)])
        parts = [part for unit in units for part in unit.parts]
        attempt = 0
        while not self.write(objects, parts, reason, who):
            if deadline.passed():
                return  # still owed in the ledger: the sweep takes them
            deadline.sleep(STALLED.delay(attempt))
            attempt += 1

    def sweep(self, payloads: Sequence[Payload], reason: str, until: float) -> bool:
        """At the deadline: spool every payload still owed, one object each, in one write.

        Retries a failing spool until `until` (monotonic); returns whether it was written.
        """
        objects = _once([obj for p in payloads for obj in self.objects(p, "the sweep")])
        parts = [part for payload in payloads for part in payload.parts]
        attempt = 0
        while not self.write(objects, parts, reason, "shutdown sweep"):
            delay = STALLED.delay(attempt)
            if time.monotonic() + delay >= until:
                return False
            time.sleep(delay)
            attempt += 1
        return True

    def write(self, objects: list[S3Object], parts: Sequence[Part], reason: str, who: str) -> bool:
        """Spool these objects and settle `parts` as spooled; False (logged) if it failed."""
        try:
            self.spool.write(objects, reason=reason)
        except Exception as error:
            self.error = f"{type(error).__name__}: {error}"
            self.observer.spool_failed()
            log.error(
                "%s: cannot write %d payload(s) to the spool (%s); keeping them in memory and "
                "trying S3 and the spool again",
                who,
                _count(parts),
                self.error,
                extra={"event": "spool_failed", "payloads": _count(parts), "error": reason},
            )
            return False
        self.error = None
        self.observer.spooled(self.ledger.settle(parts, landed=False))
        return True


def _once(objects: list[S3Object]) -> list[S3Object]:
    """Each key once (payloads of one collection share its marker)."""
    return list({obj.key: obj for obj in objects}.values())


def _count(parts: Sequence[Part]) -> int:
    return sum(part.stop - part.start for part in parts)
