"""The ledger: what has been acknowledged and where it waits, for admission and for the sweep.

Admission is decided here, once, in the request's own thread: a collection is admitted whole
if the mailboxes have room for all of it (its room reserved until the router places it), or
refused whole, and a refused collection is never sent anywhere. The web thread does not wait
for any actor to learn the answer.

Every admitted payload stays *outstanding* until it is durable: landed in S3 or fsynced in
the spool. That is the one record of what the process still owes; the shutdown sweep spools
whatever is outstanding at the deadline, and each payload's receipt is settled exactly once.
Kept per collection: admitting or settling a collection is one entry, however many payloads
it holds; only a collection settled in pieces (spread over batches) remembers which.

Invariant: queued (in mailboxes) + reserved (sent to the router) <= slots x max_queue, so the
router always finds room for what it was given.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

from actors.drain import DrainBudget
from actors.messages import Collection, Part, Payload

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


class Owed:
    """A collection not yet wholly durable: which of its payloads still are not."""

    __slots__ = ("collection", "left", "settled")

    def __init__(self, collection: Collection) -> None:
        self.collection = collection
        self.left = collection.size
        self.settled: bytearray | None = None  # made when it is first settled in part

    def take(self, start: int, stop: int) -> list[tuple[int, int]]:
        """Mark start..stop durable; the ranges that were not already (each is settled once)."""
        if self.settled is None:
            if start == 0 and stop == self.left == self.collection.size:
                self.left = 0
                return [(0, stop)]
            self.settled = bytearray(self.collection.size)
        fresh: list[tuple[int, int]] = []
        for index in range(start, stop):
            if not self.settled[index]:
                self.settled[index] = 1
                if fresh and fresh[-1][1] == index:
                    fresh[-1] = (fresh[-1][0], index + 1)
                else:
                    fresh.append((index, index + 1))
        self.left -= sum(b - a for a, b in fresh)
        return fresh

    def unsettled(self) -> list[Payload]:
        collection = self.collection
        return [
            Payload(collection, index)
            for index in range(collection.size)
            if self.settled is None or not self.settled[index]
        ]


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
        self._outstanding: dict[str, Owed] = {}  # by collection id
        self._owed = 0  # payloads outstanding
        self._closed = False

    def __len__(self) -> int:
        return len(self._depths)

    # The request's thread.
    def admit(self, collection: Collection) -> str | None:
        """Reserve room for all of it, or none: None if admitted, else why not."""
        size = collection.size
        limit = self._budget.limit() if self._budget is not None else None
        with self._lock:
            if self._closed:
                return CLOSED
            if self._held + size > self._capacity:
                return MAILBOXES_FULL
            owed = self._owed
            if limit is not None and owed and owed + size > limit:
                return S3_SLOW
            if self._tenant_cap is not None:  # shares kept only when there are several
                tenant = collection.tenant
                holds = self._by_tenant.get(tenant, 0)
                if holds and holds + size > self._tenant_cap:
                    return TENANT_FULL
                self._by_tenant[tenant] = holds + size
            self._held += size
            self._reserved += size
            self._outstanding[collection.id] = Owed(collection)
            self._owed += size
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
        if self._budget is not None and self._owed >= self._budget.limit():
            return S3_SLOW
        return None

    def withdraw(self, collection: Collection) -> None:
        """Undo `admit` for a collection that provably never left the request's thread."""
        size = collection.size
        with self._lock:
            self._held -= size
            self._reserved -= size
            if self._outstanding.pop(collection.id, None) is not None:
                self._owed -= size
                self._release(collection.tenant, size)

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
        parts: Sequence[Part],
        *,
        landed: bool,
        locations: Sequence[tuple[str, int | None]] | None = None,
        existed: bool = False,
    ) -> int:
        """Mark payloads durable; each receipt is told once, with where each part landed
        (`locations[i]`: the object of parts[i] and the line of its first payload there, None
        when each payload is an object of its own). Returns how many were owed."""
        fresh: list[tuple[Collection, int, int, int]] = []  # collection, start, stop, part
        with self._lock:
            for position, (collection, start, stop) in enumerate(parts):
                owed = self._outstanding.get(collection.id)
                if owed is None:
                    continue
                for first, last in owed.take(start, stop):
                    fresh.append((collection, first, last, position))
                    self._owed -= last - first
                    self._release(collection.tenant, last - first)
                if owed.left == 0:
                    del self._outstanding[collection.id]
        for collection, first, last, position in fresh:
            receipt = collection.receipt
            if receipt is None:
                continue
            key, line = locations[position] if locations else (None, None)
            start = parts[position].start
            receipt.record(
                landed=landed,
                start=first,
                stop=last,
                key=key,
                first_line=None if line is None else line + first - start,
                existed=existed,
            )
        return sum(last - first for _, first, last, _ in fresh)

    def _release(self, tenant: str | None, count: int) -> None:
        if self._tenant_cap is None:
            return
        left = self._by_tenant[tenant] - count
        if left:
            self._by_tenant[tenant] = left
        else:
            del self._by_tenant[tenant]

    # Shutdown.
    def close(self) -> None:
        """Admit nothing more."""
        with self._lock:
            self._closed = True

    def outstanding(self) -> list[Payload]:
        """Every payload admitted and not yet durable, oldest first."""
        with self._lock:
            owed = self._outstanding.values()
            return [payload for entry in owed for payload in entry.unsettled()]

    def snapshot(self) -> LedgerSnapshot:
        with self._lock:
            return LedgerSnapshot(tuple(self._depths), self._reserved, self._owed, self._closed)
