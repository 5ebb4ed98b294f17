"""The router: places each admitted collection in the uploaders' mailboxes, round robin.

Admission already happened in the request's thread (the ledger reserved room for the whole
collection), so the router never refuses: it only chooses mailboxes. The payloads of one
collection that go to the same mailbox travel as one message (`Deliver`): waking an uploader
costs more than what it then does with a payload in batched mode. There (`whole_collections`)
each collection goes whole to the next mailbox with room for it, and is spread payload by
payload only when no mailbox has room for all of it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import pykka

from actors.delivery import Delivery
from actors.ledger import Ledger
from actors.messages import Deliver, Payload, Route, Unit
from actors.retry import RestartPolicy
from actors.supervised import Salvage, SupervisedActor
from actors.supervisor import SupervisorActor
from actors.uploader import UploaderActor

log = logging.getLogger(__name__)

Plan = list[tuple[int, list[Payload]]]
SEND_AT = 256  # payloads held at most before they are sent, however many Routes wait


class Router:
    """The router's behaviour: its round-robin cursor and the collection it is placing."""

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
        self._placing: Unit | None = None  # the collection being planned
        self._held: dict[int, list[Payload]] = {}  # planned, not yet sent, per mailbox
        self._held_count = 0

    def receive(self, message: Any) -> None:
        if isinstance(message, Route):
            self.take(message)
        else:
            log.warning("router: unexpected message %r", message)

    def take(self, unit: Unit) -> None:
        """Plan where the collection goes; send what is planned once no Route is waiting.

        In batched mode, under load, Routes queue up in the router's own mailbox; holding
        their payloads until it is empty (or `SEND_AT` are held) sends each uploader one
        message for many collections instead of one each, and waking an uploader is most of
        what a request costs there.
        """
        self._placing = unit
        for slot, chunk in self._plan(list(unit.payloads)):
            self._held.setdefault(slot, []).extend(chunk)
            self._held_count += len(chunk)
        self._placing = None
        if self._held_count >= SEND_AT or not self._more_waiting():
            self._send()

    def salvage(self) -> Salvage:
        """The collection being planned, and what was planned but not sent (not yet placed)."""
        unit, self._placing = self._placing, None
        held = [payload for chunk in self._held.values() for payload in chunk]
        self._held, self._held_count = {}, 0
        return Salvage(unit, [Route(tuple(held))] if held else [])

    def dropped(self, units: list[Unit]) -> None:
        """Collections spooled instead of placed: give back the room reserved for them."""
        self._ledger.unreserve(sum(len(unit.payloads) for unit in units))

    def stop(self) -> None:
        self._send()

    def _send(self) -> None:
        while self._held:
            slot, chunk = next(iter(self._held.items()))
            self._uploaders[slot].tell(Deliver(tuple(chunk)))
            self._ledger.placed(slot, len(chunk))
            del self._held[slot]
            self._held_count -= len(chunk)

    def _plan(self, payloads: list[Payload]) -> Plan:
        room = self._ledger.room()
        for slot, chunk in self._held.items():
            room[slot] -= len(chunk)
        if self._whole_collections:
            whole = self._whole(payloads, room)
            if whole:
                return whole
        return self._spread(payloads, room)

    def _whole(self, payloads: list[Payload], room: list[int]) -> Plan:
        """The whole collection in the next mailbox with room for all of it, if there is one."""
        count = len(room)
        for step in range(count):
            slot = (self._cursor + step) % count
            if room[slot] >= len(payloads):
                self._cursor = (slot + 1) % count
                return [(slot, payloads)]
        return []

    def _spread(self, payloads: list[Payload], room: list[int]) -> Plan:
        """Each payload to the next mailbox with room, round robin; one message per mailbox.

        The ledger guarantees room for all of them; should that ever be wrong, the rest go
        round robin past the bound rather than being dropped.
        """
        count = len(room)
        chunks: dict[int, list[Payload]] = {}
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
