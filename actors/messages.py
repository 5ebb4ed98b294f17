"""The messages actors exchange and the units of work they carry. Immutable plain data.

A *unit* is whatever is stored as one thing: a `Payload` (one object per payload) or a
`Batch` (one NDJSON object for many). Every unit answers the same protocol (`Unit`), so the
code that retries, spools, counts and settles units never asks which kind it holds.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from actors.storage import PayloadStore
    from store import S3Object


class Receipt:
    """Counts down as the payloads of one request land or are spooled (for ACK_MODE=stored).

    A synchronisation point (like a future), shared on purpose between the request's thread
    and the uploaders; the ledger records each payload into it exactly once.
    """

    def __init__(self, expected: int) -> None:
        self._pending = expected
        self.landed = 0
        self.spooled = 0
        self.existed = 0  # landed, on a key that already held it (a repeat)
        self.locations: list[tuple[str, int | None] | None] = [None] * expected
        self._lock = threading.Lock()
        self._done = threading.Event()

    def record(
        self,
        *,
        landed: bool,
        index: int = 0,
        location: tuple[str, int | None] | None = None,
        existed: bool = False,
    ) -> None:
        """One payload durable: `location` is the object key it landed under and its line
        in that object (None: the object is the payload alone)."""
        with self._lock:
            if landed:
                self.landed += 1
                self.existed += existed
                if location is not None and 0 <= index < len(self.locations):
                    self.locations[index] = location
            else:
                self.spooled += 1
            self._pending -= 1
            if self._pending <= 0:
                self._done.set()

    def wait(self, timeout: float) -> bool:
        """True once every payload is accounted for (landed or spooled) within `timeout`."""
        return self._done.wait(timeout)


class Unit(Protocol):
    """One thing to store: its id (fixed at acceptance, so its key is too) and its payloads."""

    @property
    def id(self) -> str: ...

    @property
    def payloads(self) -> Sequence[Payload]: ...

    @property
    def sealed(self) -> bool:
        """True when stored as it is; False for a payload that may still join a batch."""
        ...

    def to_objects(self, store: PayloadStore) -> list[S3Object]: ...


@dataclass(frozen=True, slots=True)
class Payload:
    """One accepted payload on its way to storage.

    `id` and `received_at` are fixed when the payload is accepted, so every later attempt
    (a retry, a redelivery after a crash, a replay from the spool) writes the same object.
    """

    id: str
    version: str
    received_at: float
    document: Any
    receipt: Receipt | None = None
    tenant: str | None = None  # the tenant whose token posted it; None: a plain token
    index: int = 0  # its place in the collection it came in
    # Derived from the client's Idempotency-Key: a resent collection gets the same object
    # keys (under `idempotent/`), so it is stored once. None: keyed by `id` and the time.
    idempotent_id: str | None = None

    @property
    def group(self) -> tuple[str | None, str]:
        """What a payload shares with the others of its batch: tenant and version."""
        return (self.tenant, self.version)

    @property
    def payloads(self) -> tuple[Payload]:
        return (self,)

    @property
    def sealed(self) -> bool:
        return False

    def to_objects(self, store: PayloadStore) -> list[S3Object]:
        return [
            store.object_for(
                self.document,
                version=self.version,
                received_at=self.received_at,
                unique=self.idempotent_id or self.id,
                tenant=self.tenant,
                idempotent=self.idempotent_id is not None,
            )
        ]


def weight(units: Sequence[Unit]) -> int:
    """Payloads in these units."""
    return sum(len(unit.payloads) for unit in units)


@dataclass(frozen=True, slots=True)
class Route:
    """Dispatcher to router: place this admitted collection in the uploaders' mailboxes.

    Its room was reserved in the ledger before it was sent, so the router cannot refuse it.
    It is a unit too: if routing it crashes the router, it is redone or, poison, spooled.
    """

    payloads: tuple[Payload, ...]

    @property
    def id(self) -> str:
        return self.payloads[0].id

    @property
    def sealed(self) -> bool:
        return True

    def to_objects(self, store: PayloadStore) -> list[S3Object]:
        return [obj for payload in self.payloads for obj in payload.to_objects(store)]


@dataclass(frozen=True, slots=True)
class Deliver:
    """Router to uploader: units for its mailbox, counted there as `weight` payloads."""

    units: tuple[Unit, ...]

    @property
    def weight(self) -> int:
        return weight(self.units)


@dataclass(frozen=True, slots=True)
class Flush:
    """Uploader to itself: the batch with this id has waited long enough."""

    batch_id: str


@dataclass(frozen=True, slots=True)
class Failed:
    """A child to its supervisor (asked): I crashed; what now? Answered with a directive.

    `in_flight` units were being handled, `in_hand` taken but not started, `queued` payloads
    wait in its mailbox (which survives the restart).
    """

    child: str
    cause: str
    in_flight: int = 0
    in_hand: int = 0
    queued: int = 0
    escalation: bool = False  # from a supervisor below whose own intensity was exceeded


@dataclass(frozen=True, slots=True)
class Restart:
    """Directive: replace your behaviour after `delay` seconds and redo what you held."""

    delay: float


@dataclass(frozen=True, slots=True)
class GiveUp:
    """Directive: the tree above gave up and the process is stopping; spool what you hold,
    then carry on with your mailbox while the process drains."""

    reason: str


Directive = Restart | GiveUp
