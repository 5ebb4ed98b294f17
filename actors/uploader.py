"""The uploader: takes payloads from its own mailbox and stores them, alone or in batches.

Only a bug (an exception escaping the handler) crashes an uploader (S3 trouble is handled in
`Delivery`); then its last act is to hand everything it held, in flight, in open batches
and in its mailbox, to its supervisor, because pykka would otherwise discard it.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from types import TracebackType
from typing import Any

import pykka

from actors.batching import Batch, BatchLimits, OpenBatches
from actors.delivery import Delivery, Unit
from actors.messages import Crashed, Flush, Parcel, Payload
from actors.slots import SlotState, weight

log = logging.getLogger(__name__)


class UploaderActor(pykka.ThreadingActor):
    """Stores each payload it receives, or each batch it fills; the router bounds its mailbox."""

    use_daemon_thread = True

    def __init__(
        self,
        slot: int,
        delivery: Delivery,
        limits: BatchLimits,
        *,
        state: SlotState,
        supervisor: pykka.ActorRef[Any] | None = None,
    ) -> None:
        super().__init__()
        self.slot = slot
        self._delivery = delivery
        self._limits = limits
        self._state = state
        self._open = OpenBatches(limits)
        state.in_flight = None
        state.open = self._open
        self._supervisor = supervisor

    def __str__(self) -> str:
        return f"uploader[{self.slot}]"

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Payload | Batch):
            self._state.queued.add(-weight([message]))
            return self._take(message)
        if isinstance(message, Parcel):
            if message.counted:
                self._state.queued.add(-weight(message.payloads))
            return self._work_through(message.payloads)
        if isinstance(message, Flush):
            batch = self._open.take(message.batch_id)
            if batch is not None:
                self._store(batch)
            return None
        return super().on_receive(message)

    def on_stop(self) -> None:
        """Shutdown flushes partial batches."""
        for batch in self._open.take_all():
            self._store(batch)

    def _work_through(self, units: list[Any]) -> None:
        """Take the units of a parcel one by one, keeping track so a crash loses none."""
        self._state.parcel = units
        for index, unit in enumerate(units):
            self._state.next_index = index + 1
            self._take(unit)
        self._state.parcel = None

    def _take(self, unit: Unit) -> None:
        if isinstance(unit, Batch):  # handed back after a crash: stored as it was
            self._store(unit)
        elif self._limits.enabled:
            self._collect(unit)
        else:
            self._store(unit)

    def _collect(self, payload: Payload) -> None:
        self._state.in_flight = payload
        opened, sealed = self._open.add(payload, self._delivery.store.encode(payload.document))
        self._state.in_flight = None
        if opened is not None:
            timer = threading.Timer(self._limits.max_wait, self._flush_later, (opened.id,))
            timer.daemon = True
            timer.start()
        for batch in sealed:
            self._store(batch)

    def _flush_later(self, batch_id: str) -> None:
        # If the actor has stopped or crashed, its open batches were flushed or handed over.
        with contextlib.suppress(pykka.ActorDeadError):
            self.actor_ref.tell(Flush(batch_id))

    def _store(self, unit: Unit) -> None:
        self._state.in_flight = unit
        self._delivery.deliver(unit, str(self))
        self._state.in_flight = None

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Hand what it held and the whole mailbox over before pykka discards them."""
        cause = f"{getattr(exception_type, '__name__', 'Exception')}: {exception_value}"
        handed_over = threading.Event()
        report = Crashed(
            slot=self.slot,
            actor=str(self),
            cause=cause,
            in_flight=self._state.in_flight,
            held=self._state.take_held(),
            inbox=self.actor_inbox,
            queued=self._state.queued,
            handed_over=handed_over,
        )
        self._state.in_flight = None  # from here on, the report owns it
        try:
            if self._supervisor is None:
                raise pykka.ActorDeadError("no supervisor")
            self._supervisor.tell(report)
        except pykka.ActorDeadError:
            self._spool_everything(report)
            return
        if not handed_over.wait(timeout=30):
            log.error("%s: supervisor did not take over its mailbox; spooling it", self)
            self._spool_everything(report)

    def _spool_everything(self, report: Crashed) -> None:
        """No supervisor to hand over to (shutting down): keep the messages on disk instead."""
        self._delivery.dead_letter(
            everything_in(report),
            reason=f"{self} crashed ({report.cause}) with no supervisor to restart it",
        )


def everything_in(report: Crashed) -> list[Unit]:
    """All a crashed uploader held, in order: in flight, in hand, then its mailbox (drained)."""
    in_flight = [report.in_flight] if report.in_flight is not None else []
    return in_flight + report.held + units_in(drain(report.inbox))


def units_in(envelopes: list[Any]) -> list[Unit]:
    """The payloads and batches in these envelopes, parcels unpacked, in order."""
    units: list[Unit] = []
    for envelope in envelopes:
        message = envelope.message
        if isinstance(message, Parcel):
            units += message.payloads
        elif isinstance(message, Payload | Batch):
            units.append(message)
    return units


def counted_in(envelopes: list[Any]) -> int:
    """How many payloads of these envelopes the mailbox gauge counted in."""
    total = 0
    for envelope in envelopes:
        message = envelope.message
        if isinstance(message, Parcel) and message.counted:
            total += weight(message.payloads)
        elif isinstance(message, Payload | Batch):
            total += weight([message])
    return total


def drain(inbox: Any) -> list[Any]:
    """Take every envelope out of a pykka inbox without blocking."""
    envelopes = []
    while True:
        try:
            envelopes.append(inbox.get_nowait())
        except queue.Empty:
            return envelopes
