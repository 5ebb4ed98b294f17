"""The supervisor: restarts crashed uploaders and redelivers their messages (OTP's one_for_one).

pykka has no supervision and drops a crashed actor's mailbox silently. Here a crashing
uploader hands its in-flight message and its mailbox to this actor, which starts a replacement
in the same slot after a backoff and gives it every message back. A slot that crashes more than
`max_restarts` times within `period` seconds is given up (its messages go to the other slots);
a message that has crashed `poison_after` uploaders goes to the dead-letter spool instead.
Every event is one log line naming the actor, the slot, the cause and the message counts.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pykka

from actors.delivery import Unit, payloads_of
from actors.messages import (
    AttachRouter,
    Crashed,
    CurrentSlots,
    Parcel,
    Redeliver,
    ReplaceSlot,
    Restart,
    ShutDown,
    Sync,
)
from actors.observer import ActorObserver, NoActorObserver
from actors.retry import RestartPolicy
from actors.uploader import counted_in, drain, everything_in, units_in

log = logging.getLogger(__name__)

UploaderFactory = Callable[[int, pykka.ActorRef[Any]], pykka.ActorRef[Any]]
DeadLetter = Callable[[list[Unit], str], None]


class SupervisorActor(pykka.ThreadingActor):
    use_daemon_thread = True

    def __init__(
        self,
        factory: UploaderFactory,
        workers: int,
        dead_letter: DeadLetter,
        policy: RestartPolicy,
        observer: ActorObserver | None = None,
    ) -> None:
        super().__init__()
        self._observer = observer or NoActorObserver()
        self._factory = factory
        self._workers = workers
        self._dead_letter = dead_letter
        self._policy = policy
        self._slots: list[pykka.ActorRef[Any] | None] = []
        self._restarts = [collections.deque[float]() for _ in range(workers)]
        self._held: dict[int, list[Unit]] = {}
        self._router: pykka.ActorRef[Any] | None = None
        self._shutting_down = False

    def __str__(self) -> str:
        return "supervisor"

    def on_start(self) -> None:
        self._slots = [self._factory(slot, self.actor_ref) for slot in range(self._workers)]

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Crashed):
            try:
                return self._crashed(message)
            except Exception:
                # A bug here must not lose the crashed uploader's messages: keep them on disk.
                log.exception("supervisor failed to handle %s's crash; spooling", message.actor)
                units = everything_in(message)
                message.handed_over.set()
                self._dead_letter(units, "the supervisor failed")
                return None
        if isinstance(message, Restart):
            return self._restart(message)
        if isinstance(message, CurrentSlots):
            return list(self._slots)
        if isinstance(message, AttachRouter):
            self._router = message.router
            return None
        if isinstance(message, ShutDown):
            return self._shut_down()
        return super().on_receive(message)

    def _crashed(self, report: Crashed) -> None:
        queued, stop_requested = self._take_mailbox(report)
        pending = len(queued)
        in_flight = report.in_flight
        messages = ([in_flight] if in_flight is not None else []) + report.held + queued
        fields = {"actor": report.actor, "slot": report.slot, "cause": report.cause}
        if in_flight is not None:
            in_flight.crashes += 1
            if in_flight.crashes >= self._policy.poison_after:
                messages.remove(in_flight)
                self._dead_letter(
                    [in_flight], f"poison message: crashed {in_flight.crashes} uploaders"
                )
                log.error(
                    "%s: %s %s (%d payload(s)) crashed %d uploaders; spooled it as a poison "
                    "message",
                    report.actor,
                    type(in_flight).__name__.lower(),
                    in_flight.id,
                    len(payloads_of(in_flight)),
                    in_flight.crashes,
                    extra={"event": "poison_spooled", "payload": in_flight.id, **fields},
                )
        if self._shutting_down or stop_requested:
            self._dead_letter(messages, f"{report.actor} crashed during shutdown")
            self._set_slot(report.slot, None)
            log.error(
                "%s crashed during shutdown (%s); spooled its %d message(s)",
                report.actor,
                report.cause,
                len(messages),
                extra={"event": "uploader_crashed", "spooled": len(messages), **fields},
            )
            return
        window = self._restarts[report.slot]
        now = time.monotonic()
        window.append(now)
        while window and window[0] < now - self._policy.period:
            window.popleft()
        if len(window) > self._policy.max_restarts:
            self._give_up(report, messages, fields)
            return
        delay = self._policy.backoff(len(window))
        log.error(
            "%s crashed (%s) holding %d in flight, %d more in hand and %d queued; "
            "restarting slot %d in %.2fs (restart %d of %d allowed in %.0fs)",
            report.actor,
            report.cause,
            int(in_flight is not None),
            len(report.held),
            pending,
            report.slot,
            delay,
            len(window),
            self._policy.max_restarts,
            self._policy.period,
            extra={
                "event": "uploader_crashed",
                "in_flight": int(in_flight is not None),
                "in_hand": len(report.held),
                "queued": pending,
                "restart_in": round(delay, 3),
                "restarts_in_period": len(window),
                **fields,
            },
        )
        self._set_slot(report.slot, None)
        self._held[report.slot] = messages
        timer = threading.Timer(delay, self._tell_self, (Restart(report.slot, messages),))
        timer.daemon = True
        timer.start()

    def _take_mailbox(self, report: Crashed) -> tuple[list[Unit], bool]:
        """Empty the dead uploader's mailbox; also say whether a stop was queued in it."""
        if self._router is not None:
            # Once the router answers, it has sent its last message to the dead actor.
            with contextlib.suppress(pykka.ActorDeadError, pykka.Timeout):
                self._router.ask(Sync(), timeout=5)
        envelopes = drain(report.inbox)
        report.queued.add(-counted_in(envelopes))  # out of the mailbox, into our hands
        report.handed_over.set()
        stop = any(isinstance(env.message, pykka.messages._ActorStop) for env in envelopes)
        return units_in(envelopes), stop

    def _restart(self, message: Restart) -> None:
        held = self._held.pop(message.slot, None)
        if held is None:
            return  # already dealt with by a shutdown
        ref = self._factory(message.slot, self.actor_ref)
        ref.tell(Parcel(held, counted=False))
        self._observer.restarted()
        self._set_slot(message.slot, ref)
        log.warning(
            "restarted uploader[%d] and redelivered %d message(s) to it",
            message.slot,
            len(held),
            extra={
                "event": "uploader_restarted",
                "actor": f"uploader[{message.slot}]",
                "slot": message.slot,
                "redelivered": len(held),
                "restarts_in_period": len(self._restarts[message.slot]),
            },
        )

    def _give_up(self, report: Crashed, messages: list[Unit], fields: dict[str, Any]) -> None:
        self._set_slot(report.slot, None)
        placed = 0
        if messages and self._router is not None:
            try:
                placed = self._router.ask(Redeliver(messages), timeout=10)
            except (pykka.ActorDeadError, pykka.Timeout):
                placed = 0
        self._dead_letter(messages[placed:], f"{report.actor} was given up")
        left = sum(ref is not None for ref in self._slots)
        log.critical(
            "gave up on slot %d: %s crashed %d times within %.0fs (last: %s); "
            "%d message(s) redelivered to other slots, %d spooled; %d slot(s) left",
            report.slot,
            report.actor,
            len(self._restarts[report.slot]),
            self._policy.period,
            report.cause,
            placed,
            len(messages) - placed,
            left,
            extra={
                "event": "slot_given_up",
                "redelivered": placed,
                "spooled": len(messages) - placed,
                "slots_left": left,
                **fields,
            },
        )
        if left == 0:
            log.critical(
                "no uploader slot is left: every new collection is refused with 503",
                extra={"event": "no_slots_left"},
            )

    def _shut_down(self) -> int:
        self._shutting_down = True
        held = [p for messages in self._held.values() for p in messages]
        self._held.clear()
        self._dead_letter(held, "shutting down while waiting to restart an uploader")
        return len(held)

    def _set_slot(self, slot: int, ref: pykka.ActorRef[Any] | None) -> None:
        self._slots[slot] = ref
        if self._router is not None:
            with contextlib.suppress(pykka.ActorDeadError, pykka.Timeout):
                self._router.ask(ReplaceSlot(slot, ref), timeout=5)

    def _tell_self(self, message: Any) -> None:
        try:
            self.actor_ref.tell(message)
        except pykka.ActorDeadError:
            if isinstance(message, Restart):
                self._dead_letter(message.units, "supervisor stopped before the restart")
