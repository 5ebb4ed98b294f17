"""The messages actors exchange. Plain data: easy to redeliver, spool and test."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Payload:
    """One accepted payload on its way to storage.

    `id` and `received_at` are fixed when the payload is accepted, so every later attempt
    (a retry, a redelivery after a crash, a replay from the spool) writes the same object.
    """

    id: str
    version: str
    received_at: float
    document: Any
    crashes: int = 0


@dataclass(frozen=True, slots=True)
class Route:
    """Ask the router to place a whole collection, or none of it."""

    payloads: list[Payload]


@dataclass(frozen=True, slots=True)
class Routed:
    """The router's answer: how many payloads were placed (0 means refused whole)."""

    accepted: int
    reason: str = ""


@dataclass(frozen=True, slots=True)
class SlotStatus:
    """One uploader slot, as the router sees it."""

    slot: int
    alive: bool
    depth: int


@dataclass(frozen=True, slots=True)
class Status:
    """Ask the router for the state of every slot."""

    slots: list[SlotStatus] = field(default_factory=list)
