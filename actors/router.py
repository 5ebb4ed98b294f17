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


class Router:
    """The router's behaviour: its round-robin cursor and the collection it is placing."""

    def __init__(
        self,
        uploaders: Sequence[pykka.ActorRef[UploaderActor]],
        ledger: Ledger,
        whole_collections: bool,
    ) -> None:
        self._uploaders = uploaders
        self._ledger = ledger
        self._whole_collections = whole_collections
        self._cursor = 0
        self._placing: Unit | None = None  # the collection being placed
        self._planned: Plan = []
        self._sent = 0  # chunks of the plan already in mailboxes

    def receive(self, message: Any) -> None:
        if isinstance(message, Route):
            self.take(message)
        else:
            log.warning("router: unexpected message %r", message)

    def take(self, unit: Unit) -> None:
        self._placing, self._planned, self._sent = unit, [], 0
        self._planned = self._plan(list(unit.payloads))
        for slot, chunk in self._planned:
            self._uploaders[slot].tell(Deliver(tuple(chunk)))
            self._ledger.placed(slot, len(chunk))
            self._sent += 1
        self._placing = None

    def salvage(self) -> Salvage:
        """The part of the collection not yet sent (what was sent is in mailboxes already)."""
        unit, self._placing = self._placing, None
        if unit is None:
            return Salvage()
        if not self._planned:
            return Salvage(unit)
        left = [payload for _, chunk in self._planned[self._sent :] for payload in chunk]
        return Salvage(Route(tuple(left)) if left else None)

    def dropped(self, units: list[Unit]) -> None:
        """Collections spooled instead of placed: give back the room reserved for them."""
        self._ledger.unreserve(sum(len(unit.payloads) for unit in units))

    def stop(self) -> None:
        pass

    def _plan(self, payloads: list[Payload]) -> Plan:
        room = self._ledger.room()
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
            lambda _ref: Router(uploaders, ledger, whole_collections),
            supervisor=supervisor,
            delivery=delivery,
            policy=policy,
            on_dead=on_dead,
        )
