"""The ledger: what has been acknowledged and where it waits, for admission and for the sweep.

Admission is decided here, once, in the request's own thread: a collection is admitted whole
if the mailboxes have room for all of it (its room reserved until the router places it), or
refused whole, and a refused collection is never sent anywhere. The web thread does not wait
for any actor to learn the answer.

Every admitted payload stays *outstanding* until it is durable: landed in S3 or fsynced in
the spool. That is the one record of what the process still owes; the shutdown sweep spools
whatever is outstanding at the deadline, and each payload's receipt is settled exactly once.

Invariant: queued (in mailboxes) + reserved (sent to the router) <= slots x max_queue, so the
router always finds room for what it was given.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from actors.drain import DrainBudget
from actors.messages import Payload

MAILBOXES_FULL = "all uploader mailboxes are full"
S3_SLOW = (
    "S3 is storing slowly: what is already queued is all the uploaders can store within the "
    "shutdown drain time"
)
CLOSED = "the service is shutting down"
TENANT_FULL = "this tenant already holds its share of the uploaders' mailboxes"


@dataclass(frozen=True, slots=True)
class LedgerSnapshot:
    depths: tuple[int, ...]  # payloads in each uploader's mailbox
    reserved: int  # admitted, still on their way through the router
    outstanding: int  # admitted and not yet durable (in S3 or the spool)
    closed: bool


class Ledger:
    """Room in the uploaders' mailboxes and the payloads still owed; safe from any thread."""

    def __init__(
        self,
        slots: int,
        max_queue: int,
        budget: DrainBudget | None = None,
        tenant_share: float = 1.0,
    ) -> None:
        self._lock = threading.Lock()
        self._budget = budget
        # What one tenant may hold at once (no tenant counts as one), so a tenant flooding
        # the service leaves the others their room.
        self._tenant_cap = (
            None if tenant_share >= 1 else max(int(slots * max_queue * tenant_share), 1)
        )
        self._by_tenant: dict[str | None, int] = {}
        self._depths = [0] * slots
        self._held = 0  # sum of depths + reserved
        self._reserved = 0
        self._capacity = slots * max_queue
        self.max_queue = max_queue
        self._outstanding: dict[str, Payload] = {}
        self._closed = False

    def __len__(self) -> int:
        return len(self._depths)

    # The request's thread.
    def admit(self, payloads: Iterable[Payload]) -> str | None:
        """Reserve room for all of these, or none: None if admitted, else why not."""
        batch = list(payloads)
        limit = self._budget.limit() if self._budget is not None else None
        with self._lock:
            if self._closed:
                return CLOSED
            if self._held + len(batch) > self._capacity:
                return MAILBOXES_FULL
            owed = len(self._outstanding)
            if limit is not None and owed and owed + len(batch) > limit:
                return S3_SLOW
            if self._tenant_cap is not None:  # shares kept only when there are several
                tenant = batch[0].tenant if batch else None
                holds = self._by_tenant.get(tenant, 0)
                if holds and holds + len(batch) > self._tenant_cap:
                    return TENANT_FULL
                self._by_tenant[tenant] = holds + len(batch)
            self._held += len(batch)
            self._reserved += len(batch)
            for payload in batch:
                self._outstanding[payload.id] = payload
        return None

    def refusal(self) -> str | None:
        """Why even one payload would be refused now, or None; a hint, read without the lock.

        Lets the web layer answer 503 before reading and parsing a body when the mailboxes
        are plainly full: under overload most requests are refused, and that is most of
        their cost. `admit` still decides for whatever gets past this.
        """
        if self._closed:
            return CLOSED
        if self._held >= self._capacity:
            return MAILBOXES_FULL
        if self._budget is not None and len(self._outstanding) >= self._budget.limit():
            return S3_SLOW
        return None

    def withdraw(self, payloads: Iterable[Payload]) -> None:
        """Undo `admit` for a collection that provably never left the request's thread."""
        batch = list(payloads)
        with self._lock:
            self._held -= len(batch)
            self._reserved -= len(batch)
            for payload in batch:
                if self._outstanding.pop(payload.id, None) is not None:
                    self._release(payload.tenant)

    # The router.
    def room(self) -> list[int]:
        """Room left in each mailbox; it can only grow until the router itself places more."""
        with self._lock:
            return [max(self.max_queue - depth, 0) for depth in self._depths]

    def unreserve(self, count: int) -> None:
        """Admitted payloads that will never be placed (spooled instead): free their room."""
        with self._lock:
            self._held -= count
            self._reserved -= count

    def placed(self, slot: int, count: int) -> None:
        with self._lock:
            self._depths[slot] += count
            self._reserved -= count

    # An uploader.
    def taken(self, slot: int, count: int) -> None:
        """Out of the mailbox into the uploader's hands (still outstanding until durable)."""
        with self._lock:
            self._depths[slot] -= count
            self._held -= count

    # Whoever made payloads durable.
    def settle(
        self,
        payloads: Sequence[Payload],
        *,
        landed: bool,
        locations: Sequence[tuple[str, int | None]] | None = None,
        existed: bool = False,
    ) -> int:
        """Mark payloads durable; each receipt is told once (with where the payload landed).
        Returns how many were owed."""
        settled = []
        with self._lock:
            for position, payload in enumerate(payloads):
                if self._outstanding.pop(payload.id, None) is not None:
                    settled.append((position, payload))
                    self._release(payload.tenant)
        for position, payload in settled:
            if payload.receipt is not None:
                payload.receipt.record(
                    landed=landed,
                    index=payload.index,
                    location=locations[position] if locations else None,
                    existed=existed,
                )
        return len(settled)

    def _release(self, tenant: str | None) -> None:
        if self._tenant_cap is None:
            return
        left = self._by_tenant[tenant] - 1
        if left:
            self._by_tenant[tenant] = left
        else:
            del self._by_tenant[tenant]

    def owes(self, payload: Payload) -> bool:
        with self._lock:
            return payload.id in self._outstanding

    # Shutdown.
    def close(self) -> None:
        """Admit nothing more."""
        with self._lock:
            self._closed = True

    def outstanding(self) -> list[Payload]:
        """Every payload admitted and not yet durable, oldest first."""
        with self._lock:
            return list(self._outstanding.values())

    def snapshot(self) -> LedgerSnapshot:
        with self._lock:
            return LedgerSnapshot(
                tuple(self._depths), self._reserved, len(self._outstanding), self._closed
            )
