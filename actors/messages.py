"""The messages actors exchange and the units of work they carry. Immutable plain data.

A `Collection` is what one request brought: its documents travel together, admitted,
routed, batched and settled as one, so the path costs per collection what it used to cost
per payload. A `Payload` is one of its documents on its own (one object per payload, or a
collection spread over several mailboxes), made only where a payload is handled alone.

A *unit* is whatever is handled as one thing: a `Collection`, a `Payload` or a `Batch`
(one NDJSON object for many). Every unit answers the same protocol (`Unit`), so the code
that retries, spools, counts and settles units never asks which kind it holds. What a unit
settles is its `parts`: ranges of payloads of the collections they came in.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import orjson

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
        self._callbacks: list[Callable[[], None]] = []

    def record(
        self,
        *,
        landed: bool,
        start: int,
        stop: int,
        key: str | None = None,
        first_line: int | None = None,
        existed: bool = False,
    ) -> None:
        """Payloads start..stop durable: `key` is the object they landed under, and
        `first_line` the line of the first of them in that object (None: each payload is
        an object of its own)."""
        count = stop - start
        with self._lock:
            if landed:
                self.landed += count
                self.existed += count if existed else 0
                if key is not None:
                    for index in range(max(start, 0), min(stop, len(self.locations))):
                        line = None if first_line is None else first_line + index - start
                        self.locations[index] = (key, line)
            else:
                self.spooled += count
            self._pending -= count
            if self._pending > 0 or self._done.is_set():
                return
            self._done.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    def wait(self, timeout: float) -> bool:
        """True once every payload is accounted for (landed or spooled) within `timeout`."""
        return self._done.wait(timeout)

    def when_done(self, callback: Callable[[], None]) -> None:
        """Call `callback` (from whichever thread settles the last payload, or now if that
        already happened), so an event loop can wait without a thread."""
        with self._lock:
            if not self._done.is_set():
                self._callbacks.append(callback)
                return
        callback()


class Part(NamedTuple):
    """Payloads start..stop of one collection: what a unit settles when it is durable."""

    collection: Collection
    start: int
    stop: int


class Unit(Protocol):
    """One thing to store: its id (fixed at acceptance, so its key is too) and its payloads."""

    @property
    def id(self) -> str: ...

    @property
    def size(self) -> int:
        """How many payloads it holds."""
        ...

    @property
    def parts(self) -> Sequence[Part]: ...

    @property
    def payloads(self) -> Sequence[Payload]:
        """Each payload on its own (made on demand: for spooling and dead letters)."""
        ...

    @property
    def sealed(self) -> bool:
        """True when stored as it is; False for payloads that may still join a batch."""
        ...

    def to_objects(self, store: PayloadStore) -> list[S3Object]: ...


class Collection(NamedTuple):
    """One accepted collection on its way to storage.

    `id` and `received_at` are fixed when it is accepted, so every later attempt (a retry, a
    redelivery after a crash, a replay from the spool) writes the same objects. Its payloads'
    ids are its id and their place in it. (A NamedTuple: immutable, and made in a third of
    the time of a frozen dataclass, once per request.)
    """

    id: str
    version: str
    received_at: float
    documents: tuple[Any, ...]
    receipt: Receipt | None = None
    tenant: str | None = None  # the tenant whose token posted it; None: a plain token
    # Derived from the client's Idempotency-Key: a resent collection gets the same object
    # keys, so it is stored once. None: keyed by the payloads' ids and the time.
    idempotency: str | None = None

    @property
    def size(self) -> int:
        return len(self.documents)

    @property
    def group(self) -> tuple[str | None, str]:
        """What its payloads share with the others of their batch: tenant and version."""
        return (self.tenant, self.version)

    @property
    def parts(self) -> tuple[Part]:
        return (Part(self, 0, len(self.documents)),)

    @property
    def payloads(self) -> tuple[Payload, ...]:
        return tuple(Payload(self, index) for index in range(len(self.documents)))

    @property
    def sealed(self) -> bool:
        return False

    def to_objects(self, store: PayloadStore) -> list[S3Object]:
        return [obj for payload in self.payloads for obj in payload.to_objects(store)]


@dataclass(frozen=True, slots=True, eq=False)
class Payload:
    """One payload of a collection, handled on its own."""

    collection: Collection
    index: int  # its place in the collection it came in

    @property
    def id(self) -> str:
        return f"{self.collection.id}-{self.index}"

    @property
    def version(self) -> str:
        return self.collection.version

    @property
    def received_at(self) -> float:
        return self.collection.received_at

    @property
    def document(self) -> Any:
        return self.collection.documents[self.index]

    @property
    def tenant(self) -> str | None:
        return self.collection.tenant

    @property
    def idempotent_id(self) -> str | None:
        """From the Idempotency-Key, its place and its content: a payload resent as it was
        lands on its key again, and a different one (a client reusing a key for other data)
        on a key of its own, stored rather than taken for a repeat."""
        base = self.collection.idempotency
        if base is None:
            return None
        return f"{base}-{self.index:04d}-{_digest(self.document)}"

    @property
    def size(self) -> int:
        return 1

    @property
    def parts(self) -> tuple[Part]:
        return (Part(self.collection, self.index, self.index + 1),)

    @property
    def payloads(self) -> tuple[Payload]:
        return (self,)

    @property
    def sealed(self) -> bool:
        return False

    def to_objects(self, store: PayloadStore) -> list[S3Object]:
        idempotent_id = self.idempotent_id
        return [
            store.object_for(
                self.document,
                version=self.version,
                received_at=self.received_at,
                unique=idempotent_id or self.id,
                tenant=self.tenant,
                idempotent=idempotent_id is not None,
            )
        ]


def _digest(document: Any) -> str:
    encoded = orjson.dumps(document, default=repr, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(encoded).hexdigest()[:12]


def weight(units: Sequence[Unit]) -> int:
    """Payloads in these units."""
    return sum(unit.size for unit in units)


@dataclass(frozen=True, slots=True)
class Route:
    """Dispatcher to router: place these admitted collections in the uploaders' mailboxes.

    Their room was reserved in the ledger before they were sent, so the router cannot refuse
    them. It is a unit too: if routing it crashes the router, it is redone or, poison, spooled.
    """

    collections: tuple[Collection, ...]

    @property
    def id(self) -> str:
        return self.collections[0].id

    @property
    def size(self) -> int:
        return weight(self.collections)

    @property
    def parts(self) -> list[Part]:
        return [part for collection in self.collections for part in collection.parts]

    @property
    def payloads(self) -> list[Payload]:
        return [p for collection in self.collections for p in collection.payloads]

    @property
    def sealed(self) -> bool:
        return True

    def to_objects(self, store: PayloadStore) -> list[S3Object]:
        return [obj for payload in self.payloads for obj in payload.to_objects(store)]


@dataclass(frozen=True, slots=True)
class Deliver:
    """Router to uploader: units for its mailbox, counted there as `weight` payloads."""

    units: tuple[Unit, ...]
    weight: int


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
