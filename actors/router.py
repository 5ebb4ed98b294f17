"""The router: places each payload in the next uploader mailbox with room, round robin.

It is an actor so that placing a collection is atomic without locks: it alone puts payloads
into uploader mailboxes, so the room it counts cannot shrink under it. A collection is placed
whole or refused whole, so a client may resend a refused collection without duplicates.

The payloads of one collection that go to the same mailbox travel as one message (a
`Parcel`): waking an uploader costs more than what it then does with a payload in batched
mode. There (`whole_collections`) each collection goes whole to the next mailbox with room
for it, and is spread payload by payload only when no mailbox has room for all of it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pykka

from actors.messages import (
    Parcel,
    Payload,
    Redeliver,
    ReplaceSlot,
    Route,
    Routed,
    SlotStatus,
    Status,
    Sync,
)
from actors.slots import SlotTable, weight

log = logging.getLogger(__name__)

NO_UPLOADER = "no uploader is running"
MAILBOXES_FULL = "all uploader mailboxes are full"


class RouterActor(pykka.ThreadingActor):
    """Round-robins payloads over a fixed number of uploader slots, each bounded at `max_queue`."""

    use_daemon_thread = True

    def __init__(
        self,
        slots: SlotTable,
        overflow: Callable[[list[Payload], str], None],
        *,
        whole_collections: bool = False,
    ) -> None:
        super().__init__()
        self._slots = slots
        self._overflow = overflow
        self._whole_collections = whole_collections
        self._cursor = 0

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Route):
            try:
                routed = self._route(message.payloads)
            except Exception:
                if message.reply is not None:
                    message.reply.set(Routed(0, "the router failed"))
                raise
            if message.reply is not None:
                message.reply.set(routed)
            return routed
        if isinstance(message, Status):
            return Status([self._slot_status(i) for i in range(len(self._slots))])
        if isinstance(message, ReplaceSlot):
            self._slots.refs[message.slot] = message.ref
            return None
        if isinstance(message, Redeliver):
            return self._redeliver(message.units)
        if isinstance(message, Sync):
            return None
        return super().on_receive(message)

    def _slot_status(self, slot: int) -> SlotStatus:
        ref = self._slots.refs[slot]
        alive = ref is not None and ref.is_alive()
        return SlotStatus(slot, alive, self._slots.depth(slot))

    def _route(self, payloads: list[Payload]) -> Routed:
        room = [self._slots.room(slot) for slot in range(len(self._slots))]
        if sum(room) < len(payloads):
            if not self._slots.any_alive():
                return Routed(0, NO_UPLOADER)
            return Routed(0, MAILBOXES_FULL)
        chunks = self._whole(payloads, room) if self._whole_collections else None
        for slot, chunk in chunks or self._spread(payloads, room):
            if not self._send(slot, chunk):
                # The uploader died between counting and sending: the chunk goes wherever
                # something is alive, past the bound, or to disk, never half-accepted.
                rest = [p for p in chunk if not self._place_anywhere(p)]
                if rest:
                    self._overflow(rest, "no uploader alive while placing a collection")
        return Routed(len(payloads))

    def _whole(self, payloads: list[Payload], room: list[int]) -> list[tuple[int, list[Payload]]]:
        """The whole collection in the next mailbox with room for all of it, if there is one."""
        count = len(room)
        for step in range(count):
            slot = (self._cursor + step) % count
            if room[slot] >= len(payloads):
                self._cursor = (slot + 1) % count
                return [(slot, payloads)]
        return []

    def _spread(self, payloads: list[Payload], room: list[int]) -> list[tuple[int, list[Payload]]]:
        """Each payload to the next mailbox with room, round robin; one message per mailbox."""
        count = len(room)
        chunks: dict[int, list[Payload]] = {}
        for payload in payloads:
            for _ in range(count):
                slot = self._cursor
                self._cursor = (self._cursor + 1) % count
                if room[slot] > 0:
                    room[slot] -= 1
                    chunks.setdefault(slot, []).append(payload)
                    break
        return list(chunks.items())

    def _send(self, slot: int, chunk: list[Payload]) -> bool:
        ref = self._slots.refs[slot]
        if ref is None:
            return False
        queued, count = self._slots.states[slot].queued, weight(chunk)
        queued.add(count)
        try:
            ref.tell(chunk[0] if len(chunk) == 1 else Parcel(chunk))
        except pykka.ActorDeadError:
            queued.add(-count)
            return False
        return True

    def _redeliver(self, units: list[Any]) -> int:
        """Place already-accepted units in order, past the bounds if need be; return how many."""
        for placed, unit in enumerate(units):
            if not self._place_anywhere(unit):
                return placed
        return len(units)

    def _place_anywhere(self, unit: Any) -> bool:
        """Into any live mailbox, bound or no bound (for what is already accepted)."""
        return any(self._send(slot, [unit]) for slot in range(len(self._slots)))
