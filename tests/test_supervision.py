"""Crashing uploaders: restart, redelivery, poison messages, slots given up. Nothing is lost."""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actors import ActorSystem, Dispatcher, Payload, Refused
from actors.messages import Route, Routed
from actors.retry import RestartPolicy
from store.spool import DeadLetterSpool
from tests.support import GatedStore, wait_for

_ids = itertools.count()
FAST = RestartPolicy(max_restarts=5, period=60, backoff_base=0.01, backoff_cap=0.05)


def payloads(*documents: dict[str, Any]) -> list[Payload]:
    return [Payload(f"s{next(_ids)}", "1", 0.0, doc) for doc in documents]


def key(payload: Payload) -> str:
    return f"1/{payload.id}"


@pytest.fixture
def store() -> Iterator[GatedStore]:
    gated = GatedStore()
    yield gated
    gated.open_all()


@pytest.fixture
def spool(tmp_path: Path) -> DeadLetterSpool:
    return DeadLetterSpool(tmp_path / "spool")


def spooled_keys(spool: DeadLetterSpool) -> list[str]:
    keys = []
    for path in spool.files():
        keys += [obj.key for obj in spool_read(path)]
    return keys


def spool_read(path: Path) -> list[Any]:
    from store.spool import _read

    return _read(path)


def start(store, spool, *, workers: int, policy: RestartPolicy = FAST) -> ActorSystem:
    system = ActorSystem(store, spool, workers=workers, max_queue=50, restart_policy=policy)
    system.start()
    return system


def route(system: ActorSystem, batch: list[Payload]) -> Routed:
    return system.router.ask(Route(batch), timeout=5)


def test_a_crashed_uploader_is_restarted_and_gets_every_message_back(store, spool, caplog) -> None:
    caplog.set_level(logging.INFO)
    system = start(store, spool, workers=2)
    first_uploader = system.uploaders[0]
    # Slot 0 gets the crasher (held at its gate) with n2 and n4 in the same parcel, and
    # then n6 queued behind them.
    batch = payloads({"gate": "g", "crash_times": 1}, *({"n": i} for i in range(1, 6)))
    assert route(system, batch) == Routed(6)
    wait_for(lambda: store.entered == 4, timeout=5)  # all but n2 and n4 reached the store
    later = payloads({"n": 6}, {"n": 7})
    assert route(system, later) == Routed(2)
    wait_for(lambda: system.status().slots[0].depth == 1, timeout=5)
    batch += later
    store.gate("g").set()

    wait_for(lambda: len(store.saved) == 8, timeout=10)
    assert set(store.saved) == {key(p) for p in batch}
    assert store.seen[key(batch[0])] == 2  # crashed once, landed on redelivery
    assert all(store.seen[key(p)] == 1 for p in batch[1:])
    assert not first_uploader.is_alive()
    wait_for(lambda: system.status().slots[0].alive, timeout=5)
    assert system.uploaders[0] is not first_uploader
    assert spool.files() == []

    crash = next(r for r in caplog.records if getattr(r, "event", "") == "uploader_crashed")
    assert (crash.actor, crash.slot, crash.in_flight, crash.in_hand, crash.queued) == (
        "uploader[0]",
        0,
        1,
        2,
        1,
    )
    assert "RuntimeError: injected bug" in crash.cause
    restart = next(r for r in caplog.records if getattr(r, "event", "") == "uploader_restarted")
    assert (restart.slot, restart.redelivered) == (0, 4)
    assert "restarted uploader[0] and redelivered 4 message(s)" in restart.getMessage()


def test_a_poison_message_is_spooled_after_three_crashes(store, spool, caplog) -> None:
    system = start(store, spool, workers=2)
    batch = payloads({"boom": True}, *({"n": i} for i in range(1, 8)))
    assert route(system, batch) == Routed(8)

    wait_for(lambda: spool.files(), timeout=10)
    wait_for(lambda: len(store.saved) == 7, timeout=10)
    assert set(store.saved) == {key(p) for p in batch[1:]}
    assert spooled_keys(spool) == [key(batch[0])]
    assert store.seen[key(batch[0])] == 3
    poison = [r for r in caplog.records if getattr(r, "event", "") == "poison_spooled"]
    assert len(poison) == 1
    assert poison[0].payload == batch[0].id
    wait_for(lambda: system.status().slots[0].alive, timeout=5)  # the slot carries on


def test_a_slot_crashing_too_often_is_given_up_and_its_messages_go_elsewhere(
    store, spool, caplog
) -> None:
    policy = RestartPolicy(max_restarts=1, period=60, backoff_base=0.01, poison_after=5)
    system = start(store, spool, workers=2, policy=policy)
    # Slot 0: a payload crashing twice (restart once, then give up), n2 in hand behind it.
    batch = payloads({"gate": "g", "crash_times": 2}, {"n": 1}, {"n": 2}, {"n": 3})
    assert route(system, batch) == Routed(4)  # slot 0: the crasher and n2; slot 1: n1, n3
    wait_for(lambda: store.entered == 3, timeout=5)
    store.gate("g").set()

    wait_for(lambda: len(store.saved) == 4, timeout=10)
    assert spool.files() == []
    status = system.status()
    assert [s.alive for s in status.slots] == [False, True]
    assert system.uploaders[0] is None
    given_up = [r for r in caplog.records if getattr(r, "event", "") == "slot_given_up"]
    assert len(given_up) == 1
    assert (given_up[0].slot, given_up[0].slots_left) == (0, 1)
    assert given_up[0].redelivered + given_up[0].spooled >= 1

    more = payloads({"n": 10}, {"n": 11})
    assert route(system, more) == Routed(2)
    wait_for(lambda: all(key(p) in store.saved for p in more), timeout=5)
    assert {store.thread_of[key(p)] for p in more} == {store.thread_of[key(batch[1])]}


def test_with_every_slot_given_up_new_work_is_refused(store, spool, caplog) -> None:
    policy = RestartPolicy(max_restarts=0, period=60, poison_after=5)
    system = start(store, spool, workers=1, policy=policy)
    crasher = payloads({"crash_times": 1})
    assert route(system, crasher) == Routed(1)
    wait_for(lambda: system.uploaders == [None], timeout=5)

    with pytest.raises(Refused, match="no uploader is running"):
        Dispatcher(system.router).submit("1", [{"n": 1}])
    assert spooled_keys(spool) == [key(crasher[0])]  # nowhere to redeliver: kept on disk
    assert any(getattr(r, "event", "") == "no_slots_left" for r in caplog.records)


def test_what_a_crash_during_shutdown_held_is_spooled(store, spool, caplog) -> None:
    system = start(store, spool, workers=1)
    batch = payloads({"gate": "g", "boom": True}, {"n": 1}, {"n": 2})
    assert route(system, batch) == Routed(3)
    wait_for(lambda: store.entered == 1, timeout=5)
    threading.Timer(0.3, store.gate("g").set).start()  # crash once the drain has begun
    system.drain(timeout=5)

    assert store.saved == {}
    assert sorted(spooled_keys(spool)) == sorted(key(p) for p in batch)
    crash = next(r for r in caplog.records if getattr(r, "event", "") == "uploader_crashed")
    assert crash.spooled == 3
    assert "crashed during shutdown" in crash.getMessage()
