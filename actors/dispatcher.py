"""The front door of the actor system, for callers that are not actors (the web layer)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pykka

from actors.ids import new_id
from actors.messages import Payload, Receipt, Reply, Route, Routed
from actors.router import MAILBOXES_FULL, NO_UPLOADER
from actors.slots import SlotTable

log = logging.getLogger(__name__)


class Refused(Exception):
    """The collection was not accepted, none of it; the caller may resend it later."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of an accepted collection by the time the caller stopped waiting."""

    accepted: int
    landed: int
    spooled: int

    @property
    def all_landed(self) -> bool:
        return self.landed == self.accepted


class Dispatcher:
    """Turns a validated collection into payload messages and asks the router to place them."""

    def __init__(
        self,
        router: pykka.ActorRef[Any],
        slots: SlotTable | None = None,
        *,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._router = router
        self._slots = slots
        self._timeout = timeout
        self._clock = clock

    def submit(self, version: str, documents: Sequence[Any]) -> int:
        """Place every document in an uploader mailbox and return how many; or raise Refused."""
        return self._place(version, documents, None)

    def submit_and_wait(self, version: str, documents: Sequence[Any], wait: float) -> Outcome:
        """Like submit, then wait up to `wait` seconds for every payload to land or be spooled."""
        receipt = Receipt(len(documents))
        accepted = self._place(version, documents, receipt)
        receipt.wait(wait)
        return Outcome(accepted, receipt.landed, receipt.spooled)

    def _place(self, version: str, documents: Sequence[Any], receipt: Receipt | None) -> int:
        # Overloaded: refuse here, in the caller's thread, rather than after two thread
        # switches through the router. The router still decides whenever there may be room.
        if self._slots is not None and self._slots.rough_room() < len(documents):
            raise Refused(MAILBOXES_FULL if self._slots.any_alive() else NO_UPLOADER)
        received_at = self._clock()
        payloads = [Payload(new_id(), version, received_at, d, 0, receipt) for d in documents]
        reply = Reply()
        try:
            self._router.tell(Route(payloads, reply))
        except pykka.ActorDeadError:
            raise Refused("the service is shutting down") from None
        if not reply.wait(self._timeout):
            log.error("the router did not answer within %.0fs", self._timeout)
            raise Refused("the router did not answer in time")
        answer: Routed = reply.value
        if answer.accepted == 0:
            raise Refused(answer.reason)
        return answer.accepted
