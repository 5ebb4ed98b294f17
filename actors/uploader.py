"""The uploader: takes payloads from its own mailbox, one at a time, and stores them.

S3 trouble is not a crash: a failed put is retried with backoff and jitter within a time
budget, then written to the dead-letter spool. Only a bug (an exception escaping the handler)
crashes the uploader, and then its last act is to hand every message it held to its supervisor.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from types import TracebackType
from typing import Any, Protocol

import pykka

from actors.messages import Crashed, Payload
from actors.retry import Backoff, Deadline
from store import S3Object, StoreError

log = logging.getLogger(__name__)


class PayloadStore(Protocol):
    """What an uploader needs from storage (an `S3Store` in production, a fake in tests)."""

    def object_for(
        self, document: Any, *, version: str, received_at: float, unique: str
    ) -> S3Object: ...

    def put(self, obj: S3Object) -> None: ...


class Spool(Protocol):
    def write(self, objects: list[S3Object], *, reason: str) -> Any: ...


class SlotState:
    """What the uploader in one slot is doing right now, readable by the system at shutdown."""

    def __init__(self) -> None:
        self.current: Payload | None = None


def object_for(store: PayloadStore, payload: Payload) -> S3Object:
    return store.object_for(
        payload.document,
        version=payload.version,
        received_at=payload.received_at,
        unique=payload.id,
    )


def dead_letter(store: PayloadStore, spool: Spool, payloads: list[Payload], reason: str) -> None:
    """Write payloads to the spool (their keys fixed as ever) and settle their receipts."""
    if not payloads:
        return
    spool.write([object_for(store, p) for p in payloads], reason=reason)
    for payload in payloads:
        if payload.receipt is not None:
            payload.receipt.record(landed=False)


class UploaderActor(pykka.ThreadingActor):
    """Writes each payload it receives to the store; its mailbox is bounded by the router."""

    use_daemon_thread = True

    def __init__(
        self,
        slot: int,
        store: PayloadStore,
        spool: Spool,
        *,
        backoff: Backoff,
        deadline: Deadline,
        state: SlotState,
        supervisor: pykka.ActorRef[Any] | None = None,
    ) -> None:
        super().__init__()
        self.slot = slot
        self._store = store
        self._spool = spool
        self._backoff = backoff
        self._deadline = deadline
        self._state = state
        self._supervisor = supervisor
        state.current = None

    def __str__(self) -> str:
        return f"uploader[{self.slot}]"

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Payload):
            return self._upload(message)
        return super().on_receive(message)

    def _upload(self, payload: Payload) -> None:
        self._state.current = payload
        landed = self._deliver(object_for(self._store, payload))
        if payload.receipt is not None:
            payload.receipt.record(landed=landed)
        self._state.current = None

    def _deliver(self, obj: S3Object) -> bool:
        """Put the object, retrying what is transient, else spool it; True if it landed."""
        started = time.monotonic()
        attempt = 0
        while True:
            if self._deadline.passed():
                self._spool.write([obj], reason="shutting down: no time left to upload")
                return False
            try:
                self._store.put(obj)
                return True
            except StoreError as error:
                elapsed = time.monotonic() - started
                delay = self._backoff.delay(attempt)
                if not error.retryable:
                    reason = f"S3 refused it ({error.cause}); retrying would not help"
                elif elapsed + delay > self._backoff.budget:
                    reason = (
                        f"still failing after {attempt + 1} attempts in {elapsed:.1f}s "
                        f"({error.cause})"
                    )
                else:
                    log.debug("%s: attempt %d failed (%s)", self, attempt + 1, error.cause)
                    self._deadline.changed.wait(min(delay, self._deadline.remaining()))
                    attempt += 1
                    continue
                self._spool.write([obj], reason=f"{self}: {reason}")
                return False

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Hand the in-flight message and the whole mailbox over before pykka discards them."""
        cause = f"{getattr(exception_type, '__name__', 'Exception')}: {exception_value}"
        handed_over = threading.Event()
        report = Crashed(
            self.slot, str(self), cause, self._state.current, self.actor_inbox, handed_over
        )
        self._state.current = None  # from here on, the report owns the in-flight message
        try:
            if self._supervisor is None:
                raise pykka.ActorDeadError("no supervisor")
            self._supervisor.tell(report)
        except pykka.ActorDeadError:
            self._spool_mailbox(report)
            return
        if not handed_over.wait(timeout=30):
            log.error("%s: supervisor did not take over its mailbox; spooling it", self)
            self._spool_mailbox(report)

    def _spool_mailbox(self, report: Crashed) -> None:
        """No supervisor to hand over to (shutting down): keep the messages on disk instead."""
        held = [report.in_flight] if report.in_flight is not None else []
        held += payloads_in(drain(report.inbox))
        dead_letter(
            self._store,
            self._spool,
            held,
            reason=f"{self} crashed ({report.cause}) with no supervisor to restart it",
        )


def payloads_in(envelopes: list[Any]) -> list[Payload]:
    return [env.message for env in envelopes if isinstance(env.message, Payload)]


def drain(inbox: Any) -> list[Any]:
    """Take every envelope out of a pykka inbox without blocking."""
    envelopes = []
    while True:
        try:
            envelopes.append(inbox.get_nowait())
        except queue.Empty:
            return envelopes
