"""The supervision tree, started in a fixed order and drained on the way down.

    root (SupervisorActor)            gives up -> the process drains and exits non-zero
    |-- router (RouterActor)
    `-- uploaders (SupervisorActor)   escalates to root
        `-- uploader[0..n-1] (UploaderActor)

Start: the supervisors, the uploaders, then the router over them. Stop: admit nothing more,
let the router place what it was given, let every uploader empty its mailbox into S3, and at
the deadline sweep whatever the ledger still owes into the spool in one write.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pykka

from actors.alarms import Alarms
from actors.batching import BatchLimits
from actors.delivery import Delivery
from actors.dispatcher import Dispatcher
from actors.drain import DrainBudget, DrainEstimate
from actors.first_seen import FirstSeen
from actors.ledger import Ledger, LedgerSnapshot
from actors.observer import ActorObserver, NoActorObserver
from actors.retry import Backoff, Deadline, RestartPolicy
from actors.router import RouterActor
from actors.storage import PayloadStore, Spool
from actors.supervisor import SupervisorActor
from actors.uploader import UploaderActor

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SystemSnapshot:
    """What /healthz and the gauges show, read without asking any actor."""

    alive: tuple[bool, ...]  # per uploader slot
    ledger: LedgerSnapshot
    router_alive: bool
    spool_error: str | None
    gave_up: str | None
    drain: DrainEstimate
    s3_error: str | None  # the last failure to store in S3, None once something landed


class ActorSystem:
    """Owns the tree for the life of one serving process."""

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
        on_exhausted: Callable[[str], None] | None = None,
        drain_seconds: float | None = None,
        tenant_share: float = 1.0,
    ) -> None:
        self._workers = workers
        self._policy = restart_policy or RestartPolicy()
        self._limits = batch_limits or BatchLimits()
        self._observer = observer or NoActorObserver()
        self._on_exhausted = on_exhausted
        # One object per payload drains at one payload per PUT: admission keeps what is owed
        # storable within the drain. Batches drain a whole mailbox in a few PUTs: MAX_QUEUE
        # alone bounds them.
        self.budget = (
            DrainBudget(workers, drain_seconds)
            if drain_seconds is not None and not self._limits.enabled
            else None
        )
        self.ledger = Ledger(workers, max_queue, self.budget, tenant_share)
        self.deadline = Deadline()
        self.delivery = Delivery(
            store,
            spool,
            self.ledger,
            backoff=backoff or Backoff(),
            deadline=self.deadline,
            observer=self._observer,
            budget=self.budget,
            # One object per payload: a resend's objects get its first acceptance's keys (a
            # marker per collection in S3). Batches take resends again (see first_seen.py).
            first_seen=None if self._limits.enabled else FirstSeen(store),
        )
        self.alarms = Alarms()  # every uploader's batch deadlines, on one thread
        self.gave_up: str | None = None
        self.root: pykka.ActorRef[SupervisorActor] | None = None
        self.pool: pykka.ActorRef[SupervisorActor] | None = None
        self.uploaders: list[pykka.ActorRef[UploaderActor]] = []
        self.router: pykka.ActorRef[RouterActor] | None = None
        self._dispatcher: Dispatcher | None = None

    def start(self) -> pykka.ActorRef[RouterActor]:
        policy, observer = self._policy, self._observer
        self.root = SupervisorActor.start(
            "root", policy, on_exhausted=self._give_up, observer=observer
        )
        self.pool = SupervisorActor.start("uploaders", policy, parent=self.root, observer=observer)
        self.uploaders = [
            UploaderActor.start(
                slot,
                self.delivery,
                self._limits,
                self.ledger,
                self.alarms,
                policy=policy,
                supervisor=self.pool,
                on_dead=self._give_up,
            )
            for slot in range(self._workers)
        ]
        self.router = RouterActor.start(
            self.uploaders,
            self.ledger,
            delivery=self.delivery,
            policy=policy,
            supervisor=self.root,
            whole_collections=self._limits.enabled,
            on_dead=self._give_up,
        )
        log.info(
            "actors started: a router and %d uploaders under supervision, mailboxes of %d "
            "payloads each",
            self._workers,
            self.ledger.max_queue,
            extra={"event": "actors_started", "workers": self._workers},
        )
        return self.router

    def dispatcher(self) -> Dispatcher:
        """The front door for the web layer (one for the process); call after start()."""
        assert self.router is not None, "start() first"
        if self._dispatcher is None:
            self._dispatcher = Dispatcher(self.router, self.ledger)
        return self._dispatcher

    @property
    def batching(self) -> bool:
        return self._limits.enabled

    def snapshot(self) -> SystemSnapshot:
        return SystemSnapshot(
            tuple(ref.is_alive() for ref in self.uploaders),
            self.ledger.snapshot(),
            self.router is not None and self.router.is_alive(),
            self.delivery.spool_error,
            self.gave_up,
            self.budget.estimate() if self.budget is not None else DrainEstimate(None, None),
            self.delivery.s3_error,
        )

    def _give_up(self, reason: str) -> None:
        """The top of the tree gave up: admit nothing more and have the process stop."""
        if self.gave_up is not None:
            return
        self.gave_up = reason
        self.ledger.close()
        log.critical(
            "the supervision tree gave up (%s): refusing new collections, draining, then "
            "exiting with status 1 so the platform restarts the process",
            reason,
            extra={"event": "gave_up", "reason": reason},
        )
        if self._on_exhausted is not None:
            self._on_exhausted(reason)

    def drain(self, timeout: float) -> int:
        """Stop taking work, upload what is queued, spool what is owed at the deadline.

        Uploads go on until `timeout - margin`; then retries stop and whatever the ledger
        still owes is spooled in one write. Returns how many payloads could be neither
        uploaded nor spooled (0 unless the spool is unwritable to the end).
        """
        started = time.monotonic()
        margin = min(3.0, timeout / 4)
        self.deadline.set(started + timeout - margin)
        self.ledger.close()
        if self._dispatcher is not None:
            self._dispatcher.flush()  # admitted, not yet told: the router places them first
        if self.router is not None:
            self._stop(self.router)
        stopping = []
        for ref in self.uploaders:
            with contextlib.suppress(pykka.ActorDeadError):
                stopping.append(ref.stop(block=False))
        for future in stopping:  # resolved once on_stop (flushing partial batches) is done
            with contextlib.suppress(pykka.ActorDeadError, pykka.Timeout):
                future.get(timeout=max(self.deadline.remaining(), 0.01))
        owed = self.ledger.outstanding()
        lost = 0
        if owed:
            reason = "shutdown deadline reached before these were uploaded"
            if not self.delivery.sweep(owed, reason, until=started + timeout - 0.2):
                lost = len(owed)
                log.critical(
                    "could not write %d payload(s) to the spool before the shutdown deadline "
                    "(%s): they are lost",
                    lost,
                    self.delivery.spool_error,
                    extra={"event": "payloads_lost", "payloads": lost},
                )
        for ref in (self.pool, self.root):
            if ref is not None:
                self._stop(ref)
        self.alarms.stop()
        log.info(
            "actors drained in %.1fs; %d payload(s) spooled for replay at the deadline",
            time.monotonic() - started,
            len(owed) - lost,
            extra={"event": "actors_drained", "spooled": len(owed) - lost, "lost": lost},
        )
        return lost

    def _stop(self, ref: pykka.ActorRef[Any]) -> None:
        with contextlib.suppress(pykka.ActorDeadError, pykka.Timeout):
            ref.stop(block=True, timeout=max(self.deadline.remaining(), 0.1))
