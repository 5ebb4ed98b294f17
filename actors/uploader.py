"""The uploader: takes units from its own mailbox and stores them, alone or in batches.

S3 trouble is handled in `Delivery` and never crashes it; only a bug does, and then the
actor hosting it (`SupervisedActor`) restarts a fresh `Uploader` with everything this one
held, while the mailbox waits untouched.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import Any

import pykka

from actors.alarms import Alarms
from actors.batching import Batch, BatchLimits, OpenBatches
from actors.delivery import Delivery
from actors.ledger import Ledger
from actors.messages import Deliver, Flush, Unit
from actors.retry import RestartPolicy
from actors.supervised import Salvage, SupervisedActor
from actors.supervisor import SupervisorActor

log = logging.getLogger(__name__)


class Uploader:
    """One uploader's behaviour: its open batches and the units it is working through."""

    def __init__(
        self,
        slot: int,
        delivery: Delivery,
        limits: BatchLimits,
        ledger: Ledger,
        ref: pykka.ActorRef[Any],
        alarms: Alarms,
    ) -> None:
        self._slot = slot
        self._name = f"uploader[{slot}]"
        self._delivery = delivery
        self._limits = limits
        self._ledger = ledger
        self._ref = ref
        self._open = OpenBatches(limits)
        self._alarms = alarms
        self._timers: dict[str, int] = {}  # one alarm per open batch: its max wait
        self._in_flight: Unit | None = None
        self._in_hand: collections.deque[Unit] = collections.deque()  # taken, not yet done

    def receive(self, message: Any) -> None:
        if isinstance(message, Deliver):
            self._ledger.taken(self._slot, message.weight)
            self._in_hand.extend(message.units)
            self._work_through()
        elif isinstance(message, Flush):
            self._timers.pop(message.batch_id, None)
            batch = self._open.take(message.batch_id)
            if batch is not None:
                self._in_hand.append(batch)
                self._work_through()
        else:
            log.warning("%s: unexpected message %r", self._name, message)

    def take(self, unit: Unit) -> None:
        self._in_hand.append(unit)
        self._work_through()

    def salvage(self) -> Salvage:
        in_flight, self._in_flight = self._in_flight, None
        held = list(self._in_hand) + self._take_all()
        self._in_hand.clear()
        return Salvage(in_flight, held, self._ledger.snapshot().depths[self._slot])

    def dropped(self, units: list[Unit]) -> None:
        """Units it held went to the spool: their mailbox room was released when taken."""

    def stop(self) -> None:
        """Shutdown stores partial batches."""
        self._in_hand.extend(self._take_all())
        self._work_through()

    def _take_all(self) -> list[Batch]:
        for timer in self._timers.values():
            self._alarms.cancel(timer)
        self._timers.clear()
        return self._open.take_all()

    def _work_through(self) -> None:
        while self._in_hand:
            unit = self._in_flight = self._in_hand.popleft()
            if unit.sealed or not self._limits.enabled:
                self._delivery.deliver(unit, self._name)
            else:
                self._collect(unit)  # unsealed units are collections or payloads
            self._in_flight = None

    def _collect(self, unit: Unit) -> None:
        """Encode the unit's payloads as lines into the open batches of their group (tenant,
        version, hour, partition): each run of payloads of one partition in one step."""
        ((collection, start, stop),) = unit.parts  # a collection, or one of its payloads
        store = self._delivery.store
        documents = collection.documents[start:stop]
        partitions = store.partitions(documents)
        if self._limits.line_ids:
            documents = tuple(
                {"id": collection.payload_id(index), "payload": collection.documents[index]}
                for index in range(start, stop)
            )
        lines = store.encode_all(documents)
        opened: list[Batch] = []
        sealed: list[Batch] = []
        for first, last, partition in _runs(partitions, len(lines)):
            run = lines if last - first == len(lines) else lines[first:last]
            new, full = self._open.add(collection, start + first, run, partition)
            opened += new
            sealed += full
        self._in_flight = None  # in batches now: held there, not twice
        for batch in sealed:
            timer = self._timers.pop(batch.id, None)
            if timer is not None:
                self._alarms.cancel(timer)  # so alarms stay as few as the open batches
        done = {batch.id for batch in sealed}
        for batch in opened:
            if batch.id not in done:
                self._timers[batch.id] = self._alarms.set(
                    self._limits.max_wait, functools.partial(self._flush_later, batch.id)
                )
        self._in_hand.extendleft(reversed(sealed))

    def _flush_later(self, batch_id: str) -> None:
        # Once the actor has stopped, its open batches were stored at its stop.
        with contextlib.suppress(pykka.ActorDeadError):
            self._ref.tell(Flush(batch_id))


def _runs(partitions: Sequence[Hashable] | None, count: int) -> Iterator[tuple[int, int, Hashable]]:
    """(first, last, partition) of each run of consecutive payloads in one partition."""
    if partitions is None:
        yield 0, count, None
        return
    first = 0
    for index in range(1, count + 1):
        if index == count or partitions[index] != partitions[first]:
            yield first, index, partitions[first]
            first = index


class UploaderActor(SupervisedActor):
    """One uploader slot for the life of the process; its behaviour restarts, its mailbox stays."""

    def __init__(
        self,
        slot: int,
        delivery: Delivery,
        limits: BatchLimits,
        ledger: Ledger,
        alarms: Alarms,
        *,
        policy: RestartPolicy,
        supervisor: pykka.ActorRef[SupervisorActor] | None,
        on_dead: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(
            f"uploader[{slot}]",
            lambda ref: Uploader(slot, delivery, limits, ledger, ref, alarms),
            supervisor=supervisor,
            delivery=delivery,
            policy=policy,
            on_dead=on_dead,
        )
        self.slot = slot
