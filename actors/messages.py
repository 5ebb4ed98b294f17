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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import orjson

if TYPE_CHECKING:
    from actors.receipt import Receipt
    from actors.storage import PayloadStore
    from store import S3Object

# When a collection counts as accepted: its own `received_at`, or for a resend the first
# acceptance's (`actors/first_seen.py`).
When = Callable[["Collection"], float]


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

    def retimed(self, when: When) -> Unit:
        """The same unit with each collection accepted at `when(collection)`: a resend keeps
        the keys (the partition) of its first acceptance. Batches are kept as they are."""
        ...


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
    # keys (its payloads' ids come from it, its time from the first acceptance), so it is
    # stored once. None: its payloads' ids are the collection's id and their places.
    idempotency: str | None = None

    @property
    def size(self) -> int:
        return len(self.documents)

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

    def retimed(self, when: When) -> Collection:
        first = when(self)
        return self if first == self.received_at else self._replace(received_at=first)

    def payload_id(self, index: int) -> str:
        """The id its payload `index` is written under (its key, its line's id, its row).

        With an Idempotency-Key: from the key, the place and the content, so a payload resent
        as it was lands on its key again, and a different one (a client reusing a key for
        other data) on a key of its own, stored rather than taken for a repeat. Without:
        the collection's id and the place."""
        if self.idempotency is None:
            return f"{self.id}-{index}"
        return f"{self.idempotency}-{index:04d}-{_digest(self.documents[index])}"


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
    def unique(self) -> str:
        """The id it is written under: `Collection.payload_id`."""
        return self.collection.payload_id(self.index)

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
        return [
            store.object_for(
                self.document,
                version=self.version,
                received_at=self.received_at,
                unique=self.unique,
                tenant=self.tenant,
            )
        ]

    def retimed(self, when: When) -> Payload:
        collection = self.collection.retimed(when)
        return self if collection is self.collection else Payload(collection, self.index)


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

    def retimed(self, when: When) -> Route:
        return Route(tuple(collection.retimed(when) for collection in self.collections))


@dataclass(frozen=True, slots=True)
class Deliver:
    """Router to uploader: units for its mailbox, counted there as `weight` payloads."""

    units: tuple[Unit, ...]
    weight: int


@dataclass(frozen=True, slots=True)
class Flush:
    """Uploader to itself: the batch with this id has waited long enough."""

    batch_id: str
