"""When a collection sent with an Idempotency-Key was first accepted, so a resend keeps its keys.

Every payload's key carries its collection's acceptance time (`dt=`/`hour=`), so a resend
must be stored under the first acceptance's time to find its objects there already. The
store keeps one marker per such collection in S3 (`store/markers.py`); this asks it once per
collection and process, in the uploader's retried path (a failed marker write or read is an
S3 failure like any other), and remembers the answers, a bounded number of them.

A marker stands for one collection as sent: the tenant (or token) and key, the version and
every payload's content. A resend as it was finds it; a key reused for other data (a client
bug, or a partial resend) gets a marker of its own and is stored as new, at its own time, so
no new data lands in a partition readers may have finished with.

Used with one object per payload. In batched mode a resend goes into batches again (readers
drop repeats by the payload id, `BATCH_LINE_IDS`): a marker per collection would cost a PUT
per request, which batching exists to avoid.
"""

from __future__ import annotations

import collections
import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import orjson

from actors.messages import Collection, Unit
from actors.storage import PayloadStore
from store import S3Object

REMEMBERED = 10_000  # answers kept per process (~200 bytes each)


def marker_of(collection: Collection) -> str:
    """The collection as sent, as a hex digest: the same in every process on every host."""
    digest = hashlib.sha256(f"{collection.idempotency}\n{collection.version}\n".encode())
    for document in collection.documents:
        digest.update(orjson.dumps(document, default=repr, option=orjson.OPT_SORT_KEYS))
        digest.update(b"\n")
    return digest.hexdigest()[:40]


class FirstSeen:
    """Resolves and remembers first acceptances; shared by every uploader of a process."""

    def __init__(self, store: PayloadStore, remembered: int = REMEMBERED) -> None:
        self._store = store
        self._remembered = remembered
        self._lock = threading.Lock()
        # "c:<collection id>" and "m:<marker>" -> first acceptance, least recently used first
        self._known: collections.OrderedDict[str, float] = collections.OrderedDict()
        # collection id -> its marker: computed once, however many of its payloads ask
        self._markers: collections.OrderedDict[str, str] = collections.OrderedDict()
        self._busy: dict[str, _Turn] = {}  # by collection id: whose turn it is to ask S3

    def resolve(self, unit: Unit) -> Unit:
        """The unit at its collections' first acceptances: asks S3 when not yet known here.
        Raises what the store raises (an S3 failure: retried, then spooled)."""
        return unit.retimed(self._first)

    def known(self, unit: Unit) -> tuple[Unit, list[S3Object]]:
        """Without asking S3 (to spool it): the unit at what is known here, and the markers
        to spool with it for the collections not yet resolved. Replayed, such a marker claims
        the acceptance it holds, so later resends find it."""
        markers: list[S3Object] = []

        def first(collection: Collection) -> float:
            if collection.idempotency is None:
                return collection.received_at
            found = self._recall(f"c:{collection.id}")
            if found is not None:
                return found
            marker = self._marker(collection)
            found = self._recall(f"m:{marker}")
            if found is not None:
                return found
            markers.append(self._store.marker_object(marker, collection.received_at))
            return collection.received_at

        return unit.retimed(first), markers

    def _first(self, collection: Collection) -> float:
        if collection.idempotency is None:
            return collection.received_at
        key = f"c:{collection.id}"
        found = self._recall(key)
        if found is not None:
            return found
        with self._alone(collection.id):  # its other payloads' uploaders wait for this answer
            found = self._recall(key)
            if found is not None:
                return found
            marker = self._marker(collection)
            first = self._recall(f"m:{marker}")
            if first is None:
                first = self._store.first_accepted(marker, collection.received_at)
                self._remember(f"m:{marker}", first)
            self._remember(key, first)
            return first

    def _marker(self, collection: Collection) -> str:
        with self._lock:
            marker = self._markers.get(collection.id)
        if marker is None:
            marker = marker_of(collection)
            with self._lock:
                self._markers[collection.id] = marker
                while len(self._markers) > self._remembered:
                    self._markers.popitem(last=False)
        return marker

    @contextmanager
    def _alone(self, name: str) -> Iterator[None]:
        with self._lock:
            turn = self._busy.get(name) or self._busy.setdefault(name, _Turn())
            turn.waiting += 1
        try:
            with turn.lock:
                yield
        finally:
            with self._lock:
                turn.waiting -= 1
                if not turn.waiting:
                    del self._busy[name]

    def _recall(self, key: str) -> float | None:
        with self._lock:
            found = self._known.get(key)
            if found is not None:
                self._known.move_to_end(key)
            return found

    def _remember(self, key: str, first: float) -> None:
        with self._lock:
            self._known[key] = first
            self._known.move_to_end(key)
            while len(self._known) > self._remembered:
                self._known.popitem(last=False)


class _Turn:
    """One collection being resolved: a lock, and how many threads hold or wait for it."""

    __slots__ = ("lock", "waiting")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.waiting = 0
