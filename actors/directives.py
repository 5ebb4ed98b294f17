"""What a crashed child and its supervisor say to each other: the failure, and what to do."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Failed:
    """A child to its supervisor (asked): I crashed; what now? Answered with a directive.

    `in_flight` units were being handled, `in_hand` taken but not started, `queued` payloads
    wait in its mailbox (which survives the restart).
    """

    child: str
    cause: str
    in_flight: int = 0
    in_hand: int = 0
    queued: int = 0
    escalation: bool = False  # from a supervisor below whose own intensity was exceeded


@dataclass(frozen=True, slots=True)
class Restart:
    """Directive: replace your behaviour after `delay` seconds and redo what you held."""

    delay: float


@dataclass(frozen=True, slots=True)
class GiveUp:
    """Directive: the tree above gave up and the process is stopping; spool what you hold,
    then carry on with your mailbox while the process drains."""

    reason: str


Directive = Restart | GiveUp
