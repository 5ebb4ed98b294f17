"""The front door of the actor system, for callers that are not actors (the web layer).

Admission is decided once, here, in the caller's thread: the ledger reserves room for the
whole collection or refuses it whole, then the collection is told to the router. The caller
never waits on another thread to learn the answer, and a refused collection was never sent,
so it can never land: a client may resend it safely.

Waking the router costs more than what it then does with a collection. With `defer` (an
event loop's `call_soon`, in batched mode), collections admitted while the loop runs are told
to the router together, once the loop gets round to it: one message and one wake-up for all
of them. They are admitted (owed, in the ledger) before they are told, so the shutdown sweep
spools them should the router never get them.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pykka

from actors.ids import new_id
from actors.ledger import CLOSED, TENANT_FULL, Ledger
from actors.messages import Collection, Route
from actors.receipt import Receipt
from actors.router import RouterActor

log = logging.getLogger(__name__)

Defer = Callable[[Callable[[], None]], Any]


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


class Tracking:
    """An admitted collection followed into storage (ACK_MODE=stored): wait on it from a
    thread, or be called back when it is done (from an event loop)."""

    def __init__(self, accepted: int, receipt: Receipt) -> None:
        self.accepted = accepted
        self._receipt = receipt

    def wait(self, timeout: float) -> bool:
        return self._receipt.wait(timeout)

    def when_done(self, callback: Callable[[], None]) -> None:
        self._receipt.when_done(callback)

    def outcome(self) -> Outcome:
        """What became of it so far."""
        receipt = self._receipt
        return Outcome(
            self.accepted,
            receipt.landed,
            receipt.spooled,
            tuple(receipt.locations),
            receipt.existed,
        )


def idempotent_base(tenant: str | None, key: str) -> str:
    """The part of a payload's object key derived from a client's Idempotency-Key: the same
    for the same tenant and key in every process on every host."""
    return hashlib.sha256(f"{tenant or ''}\n{key}".encode()).hexdigest()[:32]


class Dispatcher:
    """Turns a validated collection into a `Collection`, admits it whole, and tells the router."""

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
        self._defer: Defer | None = None
        self._lock = threading.Lock()
        self._waiting: list[Collection] = []  # admitted, to be told together (with `defer`)

    def tell_together(self, defer: Defer | None) -> None:
        """From now on, tell collections admitted in one go of an event loop together, once
        `defer` (its `call_soon`) runs; None: tell each at once (callers in threads)."""
        self._defer = defer

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
        return self.admit(self._collection(version, documents, None, tenant, idempotency_key))

    def track(
        self,
        version: str,
        documents: Sequence[Any],
        tenant: str | None = None,
        idempotency_key: str | None = None,
    ) -> Tracking:
        """Like submit, and follow the payloads until each has landed or been spooled."""
        receipt = Receipt(len(documents))
        collection = self._collection(version, documents, receipt, tenant, idempotency_key)
        return Tracking(self.admit(collection), receipt)

    def _collection(
        self,
        version: str,
        documents: Sequence[Any],
        receipt: Receipt | None,
        tenant: str | None,
        idempotency_key: str | None,
    ) -> Collection:
        return Collection(
            new_id(),
            version,
            self._clock(),
            tuple(documents),
            receipt,
            tenant,
            idempotent_base(tenant, idempotency_key) if idempotency_key else None,
        )

    def admit(self, collection: Collection) -> int:
        """Admit the collection whole and send it to the router, or raise Refused."""
        refusal = self._ledger.admit(collection)
        if refusal is not None:
            raise Refused(refusal)
        if self._defer is None:
            self._tell((collection,))
            return collection.size
        with self._lock:
            first = not self._waiting
            self._waiting.append(collection)
        if first:
            self._defer(self.flush)
        return collection.size

    def flush(self) -> None:
        """Tell the router every collection admitted and not yet told (also at shutdown)."""
        with self._lock:
            waiting, self._waiting = self._waiting, []
        if waiting:
            self._tell(tuple(waiting))

    def _tell(self, collections: tuple[Collection, ...]) -> None:
        try:
            self._router.tell(Route(collections))
        except pykka.ActorDeadError:
            if self._defer is None:  # not enqueued, not yet acknowledged: refuse it
                for collection in collections:
                    self._ledger.withdraw(collection)
                raise Refused(CLOSED) from None
            # Already acknowledged: they stay owed in the ledger, and the shutdown that a
            # dead router brings about sweeps them into the spool.
            log.critical(
                "the router is gone: %d acknowledged collection(s) stay owed for the shutdown "
                "sweep to spool",
                len(collections),
                extra={"event": "router_gone", "collections": len(collections)},
            )
