"""Starting the actors in a fixed order and draining them on the way down.

Start: the supervisor (which starts one uploader per slot), then the router over those slots.
Stop: the router first (no new work), then every uploader finishes its mailbox; whatever cannot
be uploaded before the deadline goes to the dead-letter spool, so nothing accepted is lost.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pykka

from actors.batching import Batch, BatchLimits
from actors.delivery import Delivery, PayloadStore, Spool, Unit, payloads_of
from actors.dispatcher import Dispatcher
from actors.messages import AttachRouter, CurrentSlots, Parcel, Payload, ShutDown, Status
from actors.observer import ActorObserver, NoActorObserver
from actors.retry import Backoff, Deadline, RestartPolicy
from actors.router import RouterActor
from actors.slots import SlotState, SlotTable
from actors.supervisor import SupervisorActor
from actors.uploader import UploaderActor, drain, units_in

log = logging.getLogger(__name__)


class ActorSystem:
    """Owns the supervisor, the uploaders and the router for the life of one serving process."""

    def __init__(
        self,
        store: PayloadStore,
        spool: Spool,
        *,
        workers: int,
        max_queue: int,
        backoff: Backoff | None = None,
        restart_policy: RestartPolicy | None = None,
        batch_limits: BatchLimits | None = None,
        observer: ActorObserver | None = None,
    ) -> None:
        self._observer = observer or NoActorObserver()
        self._workers = workers
        self._max_queue = max_queue
        self._policy = restart_policy or RestartPolicy()
        self._limits = batch_limits or BatchLimits()
        self.deadline = Deadline()
        self._delivery = Delivery(
            store,
            spool,
            backoff=backoff or Backoff(),
            deadline=self.deadline,
            gzipped=self._limits.gzip,
            observer=self._observer,
        )
        self._states = [SlotState() for _ in range(workers)]
        self.slots = SlotTable([], self._states, max_queue)
        self.supervisor: pykka.ActorRef[Any] | None = None
        self.router: pykka.ActorRef[Any] | None = None

    def dispatcher(self, timeout: float = 10.0) -> Dispatcher:
        """The front door for the web layer; call after start()."""
        assert self.router is not None, "start() first"
        return Dispatcher(self.router, self.slots, timeout=timeout)

    def start(self) -> pykka.ActorRef[Any]:
        self.supervisor = SupervisorActor.start(
            self._new_uploader, self._workers, self.dead_letter, self._policy, self._observer
        )
        refs = self.supervisor.ask(CurrentSlots(), timeout=10)
        self.slots = SlotTable(refs, self._states, self._max_queue)
        self.router = RouterActor.start(
            self.slots, self.dead_letter, whole_collections=self._limits.enabled
        )
        self.supervisor.tell(AttachRouter(self.router))
        log.info(
            "actors started: %d uploaders, mailboxes of %d payloads each",
            self._workers,
            self._max_queue,
            extra={"event": "actors_started", "workers": self._workers},
        )
        return self.router

    def _new_uploader(self, slot: int, supervisor: pykka.ActorRef[Any]) -> pykka.ActorRef[Any]:
        return UploaderActor.start(
            slot, self._delivery, self._limits, state=self._states[slot], supervisor=supervisor
        )

    def dead_letter(self, units: list[Unit], reason: str) -> None:
        self._delivery.dead_letter(units, reason)

    @property
    def uploaders(self) -> list[pykka.ActorRef[Any] | None]:
        if self.supervisor is None:
            return []
        return self.supervisor.ask(CurrentSlots(), timeout=5)

    def status(self) -> Status:
        if self.router is None:
            return Status()
        return self.router.ask(Status(), timeout=5)

    def drain(self, timeout: float) -> None:
        """Stop taking work, upload what the mailboxes hold, spool what is left at the deadline.

        Uploads go on until `timeout - margin`; then retries stop, every remaining message is
        spooled, and this returns within `timeout` whatever S3 is doing.
        """
        started = time.monotonic()
        margin = min(3.0, timeout / 4)
        self.deadline.set(started + timeout - margin)
        uploaders = [ref for ref in self.uploaders if ref is not None]
        if self.router is not None:
            self.router.stop(block=True, timeout=5)
        if self.supervisor is not None:
            self.supervisor.ask(ShutDown(), timeout=5)
        for ref in uploaders:
            try:
                ref.stop(block=False)
            except pykka.ActorDeadError:
                continue
        for ref in uploaders:
            ref.actor_stopped.wait(self.deadline.remaining())
        left = self._spool_leftovers(uploaders)
        if self.supervisor is not None:
            self.supervisor.stop(block=True, timeout=5)
        log.info(
            "actors drained in %.1fs; %d payload(s) spooled for replay at the deadline",
            time.monotonic() - started,
            left,
            extra={"event": "actors_drained", "spooled": left},
        )

    def _spool_leftovers(self, uploaders: list[pykka.ActorRef[Any]]) -> int:
        """Past the deadline: take what is still queued or in flight and write it to the spool.

        An in-flight payload whose put is still running may land as well; its key is fixed, so
        the replay overwrites the same object rather than duplicating it.
        """
        leftovers: list[Unit] = []
        for ref in uploaders:
            if not ref.is_alive():
                continue
            envelopes = drain(ref.actor_inbox)
            leftovers += units_in(envelopes)
            for envelope in envelopes:  # put the stop request (and any flush) back
                if not isinstance(envelope.message, Payload | Batch | Parcel):
                    ref.actor_inbox.put(envelope)
        for state in self._states:
            leftovers += state.held()
        self.dead_letter(leftovers, "shutdown deadline reached before these were uploaded")
        return sum(len(payloads_of(unit)) for unit in leftovers)
