"""The router: places each payload in the next uploader mailbox with room, round robin.

It is an actor so that placing a collection is atomic without locks: it alone puts payloads
into uploader mailboxes, so the room it counts cannot shrink under it. A collection is placed
whole or refused whole, so a client may resend a refused collection without duplicates.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pykka

from actors.messages import Payload, Redeliver, ReplaceSlot, Route, Routed, SlotStatus, Status, Sync
from actors.slots import SlotTable

log = logging.getLogger(__name__)

NO_UPLOADER = "no uploader is running"
MAILBOXES_FULL = "all uploader mailboxes are full"


class RouterActor(pykka.ThreadingActor):
    """Round-robins payloads over a fixed number of uploader slots, each bounded at `max_queue`."""

    use_daemon_thread = True

    def __init__(self, slots: SlotTable, overflow: Callable[[list[Payload], str], None]) -> None:
        super().__init__()
        self._slots = slots
        self._overflow = overflow
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
        for placed, payload in enumerate(payloads):
            # If an uploader died between counting and sending, the rest go wherever
            # something is alive, past the bound, rather than half-accepting.
            if not self._place(payload, room) and not self._place_anywhere(payload):
                # Every uploader died mid-collection. Part of it is already placed, so the
                # rest is kept on disk: the collection stays accepted whole, nothing is lost.
                self._overflow(payloads[placed:], "no uploader alive while placing a collection")
                break
        return Routed(len(payloads))

    def _place(self, payload: Payload, room: list[int]) -> bool:
        count = len(self._slots)
        for _ in range(count):
            slot = self._cursor
            self._cursor = (self._cursor + 1) % count
            ref = self._slots.refs[slot]
            if room[slot] <= 0 or ref is None:
                continue
            try:
                ref.tell(payload)
            except pykka.ActorDeadError:
                room[slot] = 0
                continue
            room[slot] -= 1
            return True
        return False

    def _redeliver(self, units: list[Any]) -> int:
        """Place already-accepted units in order, past the bounds if need be; return how many."""
        for placed, unit in enumerate(units):
            if not self._place_anywhere(unit):
                return placed
        return len(units)

    def _place_anywhere(self, payload: Any) -> bool:
        for ref in self._slots.refs:
            if ref is None:
                continue
            try:
                ref.tell(payload)
            except pykka.ActorDeadError:
                continue
            return True
        return False
