"""The router: places each admitted collection in the uploaders' mailboxes, round robin.

Admission already happened in the request's thread (the ledger reserved room for the whole
collection), so the router never refuses: it only chooses mailboxes. The payloads that go to
the same mailbox travel as one message (`Deliver`): waking an uploader costs more than what
it then does with a payload in batched mode. There (`whole_collections`) the collections of
one Route go whole to the next mailbox with room for them all, else each to the next with
room for it, and a collection is spread payload by payload only when no mailbox has room for
all of it. With one object per payload, payloads are spread round robin.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import pykka

from actors.delivery import Delivery
from actors.ledger import Ledger
from actors.messages import Collection, Deliver, Payload, Route, Unit, weight
from actors.retry import RestartPolicy
from actors.supervised import Salvage, SupervisedActor
from actors.supervisor import SupervisorActor
from actors.uploader import UploaderActor

log = logging.getLogger(__name__)

Plan = list[tuple[int, list[Unit]]]
SEND_AT = 256  # payloads held at most before they are sent, however many Routes wait


class Router:
    """The router's behaviour: its round-robin cursor and the collections it is placing."""

    def __init__(
        self,
        uploaders: Sequence[pykka.ActorRef[UploaderActor]],
        ledger: Ledger,
        whole_collections: bool,
        more_waiting: Callable[[], bool] = lambda: False,
    ) -> None:
        self._uploaders = uploaders
        self._ledger = ledger
        self._whole_collections = whole_collections
        self._more_waiting = more_waiting
        self._cursor = 0
        self._placing: Unit | None = None  # the unit being planned
        self._held: dict[int, list[Unit]] = {}  # planned, not yet sent, per mailbox
        self._held_count = 0

    def receive(self, message: Any) -> None:
        if isinstance(message, Route):
            self.take(message)
        else:
            log.warning("router: unexpected message %r", message)

    def take(self, unit: Unit) -> None:
        """Plan where the unit's payloads go; send what is planned once no Route is waiting.

        In batched mode, under load, Routes queue up in the router's own mailbox; holding
        what they planned until it is empty (or `SEND_AT` payloads are held) sends each
        uploader one message for many collections instead of one each, and waking an
        uploader is most of what a collection costs there.
        """
        self._placing = unit
        for slot, units in self._plan(unit):
            self._held.setdefault(slot, []).extend(units)
            self._held_count += weight(units)
        self._placing = None
        if self._held_count >= SEND_AT or not self._more_waiting():
            self._send()

    def salvage(self) -> Salvage:
        """The unit being planned, and what was planned but not sent (not yet placed): the
        whole collections as one Route, to be planned again together."""
        unit, self._placing = self._placing, None
        held = [held for units in self._held.values() for held in units]
        self._held, self._held_count = {}, 0
        whole = tuple(c for c in held if isinstance(c, Collection))
        alone = [p for p in held if not isinstance(p, Collection)]
        return Salvage(unit, ([Route(whole)] if whole else []) + alone)

    def dropped(self, units: list[Unit]) -> None:
        """Units spooled instead of placed: give back the room reserved for them."""
        self._ledger.unreserve(weight(units))

    def stop(self) -> None:
        self._send()

    def _send(self) -> None:
        while self._held:
            slot, units = next(iter(self._held.items()))
            load = weight(units)
            self._uploaders[slot].tell(Deliver(tuple(units), load))
            self._ledger.placed(slot, load)
            del self._held[slot]
            self._held_count -= load

    def _plan(self, unit: Unit) -> Plan:
        room = self._ledger.room()
        for slot, units in self._held.items():
            room[slot] -= weight(units)
        if isinstance(unit, Route):
            collections: Sequence[Unit] = unit.collections
        else:
            collections = [unit]  # a collection or a payload handed back after a crash
        if not self._whole_collections:
            return self._spread([p for c in collections for p in c.payloads], room)
        slot = self._next_with_room(room, weight(collections))
        if slot is not None:  # all of them in one mailbox: one message, one wake-up
            return [(slot, list(collections))]
        plan: Plan = []
        for collection in collections:
            slot = self._next_with_room(room, collection.size)
            if slot is not None:
                room[slot] -= collection.size
                plan.append((slot, [collection]))
            else:
                plan += self._spread(list(collection.payloads), room)
        return plan

    def _next_with_room(self, room: list[int], size: int) -> int | None:
        """The next mailbox, round robin, with room for `size` payloads, if there is one."""
        count = len(room)
        for step in range(count):
            slot = (self._cursor + step) % count
            if room[slot] >= size:
                self._cursor = (slot + 1) % count
                return slot
        return None

    def _spread(self, payloads: list[Payload], room: list[int]) -> Plan:
        """Each payload to the next mailbox with room, round robin; one message per mailbox.

        The ledger guarantees room for all of them; should that ever be wrong, the rest go
        round robin past the bound rather than being dropped.
        """
        count = len(room)
        chunks: dict[int, list[Unit]] = {}
        for payload in payloads:
            slot = self._cursor
            for _ in range(count):
                if room[slot] > 0:
                    break
                slot = (slot + 1) % count
            room[slot] -= 1
            chunks.setdefault(slot, []).append(payload)
            self._cursor = (slot + 1) % count
        return list(chunks.items())


class RouterActor(SupervisedActor):
    """The router under supervision: a crash while placing redoes what was not yet sent."""

    def __init__(
        self,
        uploaders: Sequence[pykka.ActorRef[UploaderActor]],
        ledger: Ledger,
        *,
        delivery: Delivery,
        policy: RestartPolicy,
        supervisor: pykka.ActorRef[SupervisorActor] | None,
        whole_collections: bool = False,
        on_dead: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(
            "router",
            lambda ref: Router(
                uploaders,
                ledger,
                whole_collections,
                # Only in batched mode: there an uploader adds what it takes to a batch at
                # once, so a message carrying many collections holds nothing longer. One
                # object per payload keeps one message per collection, so what an uploader
                # has taken but not stored stays one collection (the documented bound).
                more_waiting=(lambda: not ref.actor_inbox.empty())  # its own mailbox
                if whole_collections
                else (lambda: False),
            ),
            supervisor=supervisor,
            delivery=delivery,
            policy=policy,
            on_dead=on_dead,
        )
