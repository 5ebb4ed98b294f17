"""The uploader slots, what each one holds, and the room left in their mailboxes.

The router alone puts messages into mailboxes and counts them in; an uploader counts them out
as it takes them. Other threads may read the counts too: `Dispatcher` refuses a collection at
once when there is plainly no room, without a round trip through the router's thread.
"""

from __future__ import annotations

import threading
from typing import Any

import pykka

from actors.batching import Batch


class Gauge:
    """A counter several threads may change (`+=` on an attribute is not atomic)."""

    __slots__ = ("_lock", "value")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0

    def add(self, amount: int) -> None:
        with self._lock:
            self.value += amount


class SlotState:
    """What the uploader in one slot holds right now, readable at a crash or at shutdown.

    `queued` counts the payloads in its mailbox; `parcel` is the message it is working
    through, `next_index` where it is in it; `in_flight` the unit it is storing or adding
    to a batch; `open` its batches being filled.
    """

    def __init__(self) -> None:
        self.queued = Gauge()
        self.in_flight: Any = None
        self.parcel: list[Any] | None = None
        self.next_index = 0
        self.open: Any = None

    def take_held(self) -> list[Any]:
        """What the uploader has taken from its mailbox but not stored, in order (not in flight)."""
        rest = list(self.parcel[self.next_index :]) if self.parcel is not None else []
        self.parcel = None
        batches = list(self.open.take_all()) if self.open is not None else []
        return rest + batches

    def held(self) -> list[Any]:
        """Everything in the uploader's hands: in flight, the rest of its parcel, open batches."""
        units = [self.in_flight] if self.in_flight is not None else []
        return units + self.take_held()


class SlotTable:
    def __init__(
        self, refs: list[pykka.ActorRef[Any] | None], states: list[SlotState], max_queue: int
    ) -> None:
        self.refs = list(refs)
        self.states = states
        self.max_queue = max_queue

    def __len__(self) -> int:
        return len(self.refs)

    def room(self, slot: int) -> int:
        ref = self.refs[slot]
        if ref is None or not ref.is_alive():
            return 0
        return max(self.max_queue - self.states[slot].queued.value, 0)

    def rough_room(self) -> int:
        """Room in the slots not given up, without asking which uploaders are alive.

        Cheap enough for every request; an over-estimate only during the moment an uploader
        is dead and not yet replaced, and then the router, which checks, refuses.
        """
        free = 0
        for ref, state in zip(self.refs, self.states, strict=True):
            if ref is not None:
                free += max(self.max_queue - state.queued.value, 0)
        return free

    def any_alive(self) -> bool:
        return any(ref is not None and ref.is_alive() for ref in self.refs)

    def depth(self, slot: int) -> int:
        return max(self.states[slot].queued.value, 0)


def weight(units: list[Any]) -> int:
    """Payloads in these units: one per payload, all of a batch's."""
    return sum(len(unit.payloads) if isinstance(unit, Batch) else 1 for unit in units)
