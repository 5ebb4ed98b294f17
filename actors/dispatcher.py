"""The front door of the actor system, for callers that are not actors (the web layer).

Admission is decided once, here, in the caller's thread: the ledger reserves room for the
whole collection or refuses it whole, then the collection is told to the router. The caller
never waits on another thread to learn the answer, and a refused collection was never sent,
so it can never land: a client may resend it safely.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import pykka

from actors.ids import new_id
from actors.ledger import CLOSED, TENANT_FULL, Ledger
from actors.messages import Payload, Receipt, Route
from actors.router import RouterActor


class Refused(Exception):
    """The collection was not accepted, none of it; the caller may resend it later.

    `tenant_limited`: refused because of what this tenant holds, not because the service is
    full (the web layer answers 429 rather than 503)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.tenant_limited = reason == TENANT_FULL


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of an accepted collection by the time the caller stopped waiting."""

    accepted: int
    landed: int
    spooled: int
    locations: tuple[tuple[str, int | None] | None, ...] = ()  # each payload's key and line
    existed: int = 0  # landed on keys that already held them: a repeat of what was stored

    @property
    def all_landed(self) -> bool:
        return self.landed == self.accepted

    @property
    def pending(self) -> int:
        """Accepted, but neither in S3 nor durably spooled yet: held in memory, being retried."""
        return self.accepted - self.landed - self.spooled


def idempotent_base(tenant: str | None, key: str) -> str:
    """The part of a payload's object key derived from a client's Idempotency-Key: the same
    for the same tenant and key in every process on every host."""
    return hashlib.sha256(f"{tenant or ''}\n{key}".encode()).hexdigest()[:32]


def _digest(document: Any) -> str:
    """A short digest of a payload's content: under one Idempotency-Key, a payload resent as
    it was lands on its key again, and a different one (a client reusing a key for other data)
    on a key of its own, stored rather than taken for a repeat."""
    encoded = orjson.dumps(document, default=repr, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(encoded).hexdigest()[:12]


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

    def submit(
        self,
        version: str,
        documents: Sequence[Any],
        tenant: str | None = None,
        idempotency_key: str | None = None,
    ) -> int:
        """Admit every document and return how many; or raise Refused, having sent nothing."""
        return self._admit(version, documents, None, tenant, idempotency_key)

    def submit_and_wait(
        self,
        version: str,
        documents: Sequence[Any],
        wait: float,
        tenant: str | None = None,
        idempotency_key: str | None = None,
    ) -> Outcome:
        """Like submit, then wait up to `wait` seconds for every payload to land or be spooled."""
        receipt = Receipt(len(documents))
        accepted = self._admit(version, documents, receipt, tenant, idempotency_key)
        receipt.wait(wait)
        return Outcome(
            accepted, receipt.landed, receipt.spooled, tuple(receipt.locations), receipt.existed
        )

    def _admit(
        self,
        version: str,
        documents: Sequence[Any],
        receipt: Receipt | None,
        tenant: str | None,
        idempotency_key: str | None,
    ) -> int:
        received_at = self._clock()
        base = idempotent_base(tenant, idempotency_key) if idempotency_key else None
        return self.admit(
            tuple(
                Payload(
                    new_id(),
                    version,
                    received_at,
                    document,
                    receipt,
                    tenant,
                    index,
                    f"{base}-{index:04d}-{_digest(document)}" if base else None,
                )
                for index, document in enumerate(documents)
            )
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
