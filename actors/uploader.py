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
from actors.messages import Crashed, Flush, Payload

log = logging.getLogger(__name__)


class SlotState:
    """What the uploader in one slot holds right now, readable by the system at shutdown."""

    def __init__(self) -> None:
        self.in_flight: Unit | None = None
        self.open: OpenBatches | None = None

    def take_open_batches(self) -> list[Unit]:
        return list(self.open.take_all()) if self.open is not None else []

    def held(self) -> list[Unit]:
        """Everything in the uploader's hands (not its mailbox): in flight and open batches."""
        units: list[Unit] = [self.in_flight] if self.in_flight is not None else []
        return units + self.take_open_batches()


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
        if isinstance(message, Payload):
            if self._limits.enabled:
                return self._collect(message)
            return self._store(message)
        if isinstance(message, Batch):  # handed back after a crash: stored as it was
            return self._store(message)
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

    def _collect(self, payload: Payload) -> None:
        opened, sealed = self._open.add(payload, self._delivery.store.encode(payload.document))
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
            self.slot,
            str(self),
            cause,
            self._state.in_flight,
            self._state.take_open_batches(),
            self.actor_inbox,
            handed_over,
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
        in_flight = [report.in_flight] if report.in_flight is not None else []
        self._delivery.dead_letter(
            in_flight + report.held + units_in(drain(report.inbox)),
            reason=f"{self} crashed ({report.cause}) with no supervisor to restart it",
        )


def units_in(envelopes: list[Any]) -> list[Unit]:
    return [env.message for env in envelopes if isinstance(env.message, Payload | Batch)]


def drain(inbox: Any) -> list[Any]:
    """Take every envelope out of a pykka inbox without blocking."""
    envelopes = []
    while True:
        try:
            envelopes.append(inbox.get_nowait())
        except queue.Empty:
            return envelopes
