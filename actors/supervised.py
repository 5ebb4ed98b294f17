"""A supervised actor: Akka's restart model on pykka, where the behaviour restarts and the
mailbox survives.

pykka stops an actor whose `on_receive` raises and silently drops the rest of its inbox. So
each of our actors is a long-lived pykka actor (its thread and its inbox) that hosts a
replaceable *behaviour*. When the behaviour raises, the actor, in its own thread, takes what
the behaviour held, asks its supervisor what to do (OTP's intensity decides), waits the backoff,
builds a fresh behaviour and gives it everything back. Its inbox was never touched: messages
sent meanwhile simply wait there. A unit of work that crashed `poison_after` behaviours is a
poison message and goes to the spool instead of crashing another.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol

import pykka

from actors.delivery import Delivery
from actors.directives import Directive, Failed, GiveUp, Restart
from actors.messages import Unit
from actors.retry import RestartPolicy
from actors.supervisor import SupervisorActor

log = logging.getLogger(__name__)

ASK_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class Salvage:
    """What a crashed behaviour held: the unit it was on, the units it had taken but not done
    (in order), and how many payloads wait in its mailbox."""

    in_flight: Unit | None = None
    in_hand: list[Unit] = field(default_factory=list)
    queued: int = 0


class Behaviour(Protocol):
    def receive(self, message: Any) -> Any:
        """Handle one message from the mailbox."""

    def take(self, unit: Unit) -> None:
        """Handle one unit handed back after a crash."""

    def salvage(self) -> Salvage:
        """After `receive` or `take` raised: what was held, taken out of the behaviour."""

    def dropped(self, units: list[Unit]) -> None:
        """Units it held were spooled instead of done (e.g. give back reserved room)."""

    def stop(self) -> None:
        """A clean stop: finish what is held (e.g. flush partial batches)."""


BehaviourFactory = Callable[[pykka.ActorRef[Any]], Behaviour]


class SupervisedActor(pykka.ThreadingActor):
    """Hosts a behaviour; restarts it on its supervisor's word, keeping the mailbox."""

    use_daemon_thread = True

    def __init__(
        self,
        name: str,
        factory: BehaviourFactory,
        *,
        supervisor: pykka.ActorRef[SupervisorActor] | None,
        delivery: Delivery,
        policy: RestartPolicy,
        on_dead: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__()
        self.name = name
        self._factory = factory
        self._supervisor = supervisor
        self._delivery = delivery
        self._policy = policy
        self._on_dead = on_dead
        self._crashes: dict[str, int] = {}
        self._behaviour: Behaviour | None = None

    def __str__(self) -> str:
        return self.name

    def on_start(self) -> None:
        try:
            self._behaviour = self._factory(self.actor_ref)
        except Exception as error:
            if self._on_dead is not None:
                self._on_dead(f"{self} could not start ({type(error).__name__}: {error})")
            raise

    def on_receive(self, message: Any) -> Any:
        assert self._behaviour is not None
        try:
            return self._behaviour.receive(message)
        except Exception as error:
            self._recover(error)
            return None

    def on_stop(self) -> None:
        assert self._behaviour is not None
        try:
            self._behaviour.stop()
        except Exception as error:
            salvage = self._behaviour.salvage()
            units = _listed(salvage.in_flight) + salvage.in_hand
            log.exception("%s failed while stopping; spooling what it held", self)
            self._delivery.dead_letter(units, f"{self} crashed while stopping ({error})", str(self))
            self._behaviour.dropped(units)

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Only a bug in this class gets here; the ledger still owes what it held."""
        reason = f"{self} died ({getattr(exception_type, '__name__', '?')}: {exception_value})"
        log.critical(
            "%s; its mailbox is lost to pykka, its payloads are still owed and will be swept "
            "to the spool at shutdown",
            reason,
            extra={"event": "actor_died", "actor": self.name},
        )
        if self._on_dead is not None:
            self._on_dead(reason)

    def _recover(self, error: Exception) -> None:
        """Restart the behaviour until everything it held has been redone or spooled."""
        assert self._behaviour is not None
        pending: list[Unit] = []
        while True:
            salvage = self._behaviour.salvage()
            in_flight = salvage.in_flight
            held = pending + salvage.in_hand
            cause = f"{type(error).__name__}: {error}"
            directive = self._ask(
                Failed(self.name, cause, len(_listed(in_flight)), len(held), salvage.queued)
            )
            if in_flight is not None and self._poisoned(in_flight, cause):
                self._behaviour.dropped([in_flight])
                in_flight = None
            units = _listed(in_flight) + held
            if isinstance(directive, GiveUp):
                self._delivery.dead_letter(units, f"{self}: {directive.reason}", str(self))
                self._behaviour.dropped(units)
                spooled, units = len(units), []
            else:
                spooled = 0
                self._delivery.deadline.sleep(directive.delay)
            self._behaviour = self._factory(self.actor_ref)
            log.warning(
                "restarted %s: %d unit(s) it held redelivered to it, %d spooled; its mailbox "
                "was kept",
                self,
                len(units),
                spooled,
                extra={
                    "event": "actor_restarted",
                    "actor": self.name,
                    "redelivered": len(units),
                    "spooled": spooled,
                },
            )
            done = 0
            try:
                for unit in units:
                    self._behaviour.take(unit)
                    done += 1
            except Exception as again:
                error, pending = again, units[done + 1 :]
                continue
            self._crashes.clear()
            return

    def _poisoned(self, unit: Unit, cause: str) -> bool:
        crashes = self._crashes[unit.id] = self._crashes.get(unit.id, 0) + 1
        if crashes < self._policy.poison_after:
            return False
        del self._crashes[unit.id]
        log.error(
            "%s: unit %s (%d payload(s)) crashed %d behaviours; a poison message: dead-lettered "
            "under S3_ERROR_PREFIX (spooled if S3 will not take it) (last: %s)",
            self,
            unit.id,
            unit.size,
            crashes,
            cause,
            extra={"event": "poison_message", "actor": self.name, "payload": unit.id},
        )
        self._delivery.poisoned(
            unit, f"poison message: crashed {crashes} times (last: {cause})", crashes, str(self)
        )
        return True

    def _ask(self, report: Failed) -> Directive:
        if self._supervisor is None:
            return Restart(self._policy.backoff_base)
        try:
            timeout = min(ASK_TIMEOUT, max(self._delivery.deadline.remaining(), 1.0))
            return self._supervisor.ask(report, timeout=timeout)
        except Exception as error:  # a supervisor that cannot answer: restart, carefully
            log.error(
                "%s: its supervisor did not answer (%s); restarting it in %.1fs anyway",
                self,
                error,
                self._policy.backoff_cap,
                extra={"event": "supervisor_unanswered", "actor": self.name},
            )
            return Restart(self._policy.backoff_cap)


def _listed(unit: Unit | None) -> list[Unit]:
    return [] if unit is None else [unit]
