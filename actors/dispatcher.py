"""The front door of the actor system, for callers that are not actors (the web layer).

Admission is decided once, here, in the caller's thread: the ledger reserves room for the
whole collection or refuses it whole, then the collection is told to the router. The caller
never waits on another thread to learn the answer, and a refused collection was never sent,
so it can never land: a client may resend it safely.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pykka

from actors.ids import new_id
from actors.ledger import CLOSED, Ledger
from actors.messages import Payload, Receipt, Route
from actors.router import RouterActor


class Refused(Exception):
    """The collection was not accepted, none of it; the caller may resend it later."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of an accepted collection by the time the caller stopped waiting."""

    accepted: int
    landed: int
    spooled: int

    @property
    def all_landed(self) -> bool:
        return self.landed == self.accepted

    @property
    def pending(self) -> int:
        """Accepted, but neither in S3 nor durably spooled yet: held in memory, being retried."""
        return self.accepted - self.landed - self.spooled


class Dispatcher:
    """Turns a validated collection into payloads, admits it whole, and tells the router."""

    def __init__(
        self,
        router: pykka.ActorRef[RouterActor],
        ledger: Ledger,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._router = router
        self._ledger = ledger
        self._clock = clock

    def refusal(self) -> str | None:
        """Why a collection would be refused right now, before it is even read; or None."""
        return self._ledger.refusal()

    def submit(self, version: str, documents: Sequence[Any]) -> int:
        """Admit every document and return how many; or raise Refused, having sent nothing."""
        return self._admit(version, documents, None)

    def submit_and_wait(self, version: str, documents: Sequence[Any], wait: float) -> Outcome:
        """Like submit, then wait up to `wait` seconds for every payload to land or be spooled."""
        receipt = Receipt(len(documents))
        accepted = self._admit(version, documents, receipt)
        receipt.wait(wait)
        return Outcome(accepted, receipt.landed, receipt.spooled)

    def _admit(self, version: str, documents: Sequence[Any], receipt: Receipt | None) -> int:
        received_at = self._clock()
        return self.admit(
            tuple(Payload(new_id(), version, received_at, d, receipt) for d in documents)
        )

    def admit(self, payloads: tuple[Payload, ...]) -> int:
        """Admit these payloads whole and send them to the router, or raise Refused."""
        refusal = self._ledger.admit(payloads)
        if refusal is not None:
            raise Refused(refusal)
        try:
            self._router.tell(Route(payloads))
        except pykka.ActorDeadError:  # not enqueued: provably never placed
            self._ledger.withdraw(payloads)
            raise Refused(CLOSED) from None
        return len(payloads)
