"""Supervisors: OTP's one_for_one with restart intensity, in a tree that escalates.

A child that crashes asks its supervisor what to do (`Failed`, answered with a directive).
As in OTP, intensity is the supervisor's: within `max_restarts` restarts (of any of its
children) in `period` seconds the answer is `Restart` after a doubling backoff. Past that the
supervisor escalates to its own parent as if it had crashed itself: if the parent grants a
restart, this level starts afresh (its restart history is cleared; its children keep their
mailboxes and the crashing one restarts); if there is no parent (the root) or the parent gave
up, the answer is `GiveUp` and `on_exhausted` tells the process to stop taking requests,
drain, and exit non-zero so the platform restarts it. No slot is ever given up while the
process carries on looking alive.

A supervisor only answers asks and never asks its children anything, so a chain of asks up
the tree cannot deadlock; an exception in its handler goes back to the asker, and pykka keeps
the supervisor running.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable
from typing import Any

import pykka

from actors.directives import Directive, Failed, GiveUp, Restart
from actors.observer import ActorObserver, NoActorObserver
from actors.retry import RestartPolicy

log = logging.getLogger(__name__)

ESCALATION_TIMEOUT = 5.0


class SupervisorActor(pykka.ThreadingActor):
    use_daemon_thread = True

    def __init__(
        self,
        name: str,
        policy: RestartPolicy,
        *,
        parent: pykka.ActorRef[Any] | None = None,
        on_exhausted: Callable[[str], None] | None = None,
        observer: ActorObserver | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.name = name
        self._policy = policy
        self._parent = parent
        self._on_exhausted = on_exhausted
        self._observer = observer or NoActorObserver()
        self._clock = clock
        self._restarts: collections.deque[float] = collections.deque()  # of any child
        self._gave_up: str | None = None

    def __str__(self) -> str:
        return f"supervisor {self.name}"

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Failed):
            return self._failed(message)
        return super().on_receive(message)

    def _failed(self, report: Failed) -> Directive:
        fields = {"actor": report.child, "supervisor": self.name, "cause": report.cause}
        if self._gave_up is not None:
            log.error(
                "%s crashed (%s) after the tree gave up; spooling what it held",
                report.child,
                report.cause,
                extra={"event": "actor_crashed", **fields},
            )
            return GiveUp(self._gave_up)
        window = self._restarts
        now = self._clock()
        window.append(now)
        while window and window[0] < now - self._policy.period:
            window.popleft()
        if len(window) <= self._policy.max_restarts and report.escalation:
            delay = self._policy.backoff(len(window))
            log.error(
                "supervisor %s escalated (%s); %s restarts that level afresh in %.2fs "
                "(restart %d of %d allowed in %.0fs)",
                report.child,
                report.cause,
                self,
                delay,
                len(window),
                self._policy.max_restarts,
                self._policy.period,
                extra={"event": "escalation_granted", "restart_in": round(delay, 3), **fields},
            )
            return Restart(delay)
        if len(window) <= self._policy.max_restarts:
            delay = self._policy.backoff(len(window))
            log.error(
                "%s crashed (%s) holding %d in flight, %d more in hand and %d queued; "
                "restarting it in %.2fs (restart %d of %d allowed in %.0fs); its mailbox is kept",
                report.child,
                report.cause,
                report.in_flight,
                report.in_hand,
                report.queued,
                delay,
                len(window),
                self._policy.max_restarts,
                self._policy.period,
                extra={
                    "event": "actor_crashed",
                    "in_flight": report.in_flight,
                    "in_hand": report.in_hand,
                    "queued": report.queued,
                    "restart_in": round(delay, 3),
                    "restarts_in_period": len(window),
                    **fields,
                },
            )
            self._observer.restarted()
            return Restart(delay)
        reason = (
            f"{report.child} crashed {len(window)} times within {self._policy.period:.0f}s "
            f"(last: {report.cause})"
        )
        above = "its parent" if self._parent is not None else "the process"
        log.critical(
            "%s: more than %d restarts; supervisor %s escalates to %s",
            reason,
            self._policy.max_restarts,
            self.name,
            above,
            extra={"event": "escalated", "restarts_in_period": len(window), **fields},
        )
        self._observer.escalated()
        directive = self._escalate(reason)
        if isinstance(directive, GiveUp):
            self._gave_up = directive.reason
            return directive
        window.clear()  # this level restarts afresh
        log.warning(
            "supervisor %s restarts afresh: %s gets another %d restarts",
            self.name,
            report.child,
            self._policy.max_restarts,
            extra={"event": "level_restarted", **fields},
        )
        return Restart(max(directive.delay, self._policy.backoff_cap))

    def _escalate(self, reason: str) -> Directive:
        if self._parent is None:
            if self._on_exhausted is not None:
                self._on_exhausted(reason)
            return GiveUp(f"the supervision tree gave up: {reason}")
        try:
            return self._parent.ask(
                Failed(self.name, reason, escalation=True), timeout=ESCALATION_TIMEOUT
            )
        except Exception as error:
            log.error("supervisor %s: its parent did not answer (%s)", self.name, error)
            return Restart(self._policy.backoff_cap)
