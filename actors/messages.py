"""The messages actors exchange. Plain data: easy to redeliver, spool and test."""

from __future__ import annotations

import _thread
import threading
from dataclasses import dataclass, field
from queue import Queue
from typing import Any


class Receipt:
    """Counts down as the payloads of one request land or are spooled (for ACK_MODE=stored)."""

    def __init__(self, expected: int) -> None:
        self._pending = expected
        self.landed = 0
        self.spooled = 0
        self._lock = threading.Lock()
        self._done = threading.Event()

    def record(self, *, landed: bool) -> None:
        with self._lock:
            if landed:
                self.landed += 1
            else:
                self.spooled += 1
            self._pending -= 1
            if self._pending <= 0:
                self._done.set()

    def wait(self, timeout: float) -> bool:
        """True once every payload is accounted for (landed or spooled) within `timeout`."""
        return self._done.wait(timeout)


@dataclass(slots=True)
class Payload:
    """One accepted payload on its way to storage.

    `id` and `received_at` are fixed when the payload is accepted, so every later attempt
    (a retry, a redelivery after a crash, a replay from the spool) writes the same object.
    `crashes` counts the uploaders it has crashed, to tell a poison message.
    """

    id: str
    version: str
    received_at: float
    document: Any
    crashes: int = 0
    receipt: Receipt | None = None


@dataclass(frozen=True, slots=True)
class Parcel:
    """Several payloads (or, redelivered, batches) for one uploader, in one message."""

    payloads: list[Any]
    counted: bool = True  # False when redelivered: not in the mailbox count


@dataclass(frozen=True, slots=True)
class Flush:
    """Uploader to itself: the batch with this id has waited long enough."""

    batch_id: str


class Reply:
    """A one-shot answer slot: a cheaper `ask` for the hottest message.

    pykka's ask builds a future around a `queue.Queue` (three conditions) for every call:
    ~75 us of CPU per request here; this lock-based slot costs a few.
    """

    __slots__ = ("_lock", "value")

    def __init__(self) -> None:
        self._lock = _thread.allocate_lock()
        self._lock.acquire()
        self.value: Any = None

    def set(self, value: Any) -> None:
        self.value = value
        self._lock.release()

    def wait(self, timeout: float) -> bool:
        return self._lock.acquire(timeout=timeout)


@dataclass(frozen=True, slots=True)
class Route:
    """Ask the router to place a whole collection, or none of it (answered in `reply`)."""

    payloads: list[Payload]
    reply: Reply | None = None


@dataclass(frozen=True, slots=True)
class Routed:
    """The router's answer: how many payloads were placed (0 means refused whole)."""

    accepted: int
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Redeliver:
    """Place units (payloads, batches) already accepted wherever there is a live uploader."""

    units: list[Any]


@dataclass(frozen=True, slots=True)
class ReplaceSlot:
    """Point a slot at a new uploader, or at nothing once the slot is given up."""

    slot: int
    ref: Any


@dataclass(frozen=True, slots=True)
class Sync:
    """A no-op the router answers only after everything sent to it before."""


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


@dataclass(frozen=True, slots=True)
class Crashed:
    """An uploader's last words to its supervisor: what it was doing and where its mailbox is.

    The dying uploader waits on `handed_over` so that pykka does not discard its mailbox
    before the supervisor has taken every message out of it.
    """

    slot: int
    actor: str
    cause: str
    in_flight: Any  # the Payload or Batch it was storing when it crashed, if any
    held: list[Any]  # the rest of the parcel it was working through, its open batches
    inbox: Queue[Any]
    queued: Any  # the slot's mailbox Gauge, to count out what the supervisor takes
    handed_over: threading.Event


@dataclass(frozen=True, slots=True)
class Restart:
    """Supervisor to itself, after the backoff: start a new uploader in `slot` with these."""

    slot: int
    units: list[Any]  # Payloads and Batches


@dataclass(frozen=True, slots=True)
class AttachRouter:
    """Tell the supervisor which router to keep informed of slot changes."""

    router: Any


@dataclass(frozen=True, slots=True)
class CurrentSlots:
    """Ask for the uploader in each slot (None where the slot was given up)."""


@dataclass(frozen=True, slots=True)
class ShutDown:
    """No more restarts: spool what is held and what later crashes hand over."""
