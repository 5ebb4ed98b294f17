"""Admission and placement: round robin, bounded mailboxes, whole-or-nothing refusal."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actors import ActorSystem, Collection, Refused
from tests.support import BrokenSpool, GatedStore, collection, wait_for


def payloads(*documents: dict[str, Any]) -> Collection:
    return collection(*documents)


def depths(system: ActorSystem) -> list[int]:
    return list(system.ledger.snapshot().depths)


@pytest.fixture
def store() -> Iterator[GatedStore]:
    gated = GatedStore()
    yield gated
    gated.open_all()  # let held uploads finish so the actors can stop


def start(store: GatedStore, tmp_path: Path, workers: int, max_queue: int) -> ActorSystem:
    spool = BrokenSpool(tmp_path / "spool")
    spool.broken = True  # these tests never spool
    system = ActorSystem(store, spool, workers=workers, max_queue=max_queue)
    system.start()
    return system


def test_payloads_are_spread_round_robin(store: GatedStore, tmp_path: Path) -> None:
    system = start(store, tmp_path, workers=4, max_queue=100)
    batch = payloads(*({"n": i} for i in range(12)))
    assert system.dispatcher().admit(batch) == 12
    wait_for(lambda: len(store.saved) == 12, timeout=5)
    threads = [store.thread_of[f"1/{p.id}"] for p in batch.payloads]
    assert len(set(threads[:4])) == 4
    assert threads[4:8] == threads[:4]
    assert threads[8:] == threads[:4]


def fill(system: ActorSystem, store: GatedStore, workers: int, max_queue: int) -> None:
    """Park one held payload in each uploader, then fill every mailbox to its bound."""
    door = system.dispatcher()
    assert door.admit(payloads(*({"gate": f"slot{i}"} for i in range(workers)))) == workers
    wait_for(lambda: store.entered == workers, timeout=5)
    queued = payloads(*({"gate": f"slot{i % workers}"} for i in range(workers * max_queue)))
    assert door.admit(queued) == workers * max_queue
    wait_for(lambda: depths(system) == [max_queue] * workers, timeout=5)


def test_a_full_mailbox_is_skipped_for_the_next_with_room(
    store: GatedStore, tmp_path: Path
) -> None:
    system = start(store, tmp_path, workers=3, max_queue=2)
    fill(system, store, workers=3, max_queue=2)
    store.gate("slot1").set()  # only the middle uploader drains
    wait_for(lambda: depths(system) == [2, 0, 2], timeout=5)

    extra = payloads({"n": 1}, {"n": 2})
    assert system.dispatcher().admit(extra) == 2
    wait_for(lambda: all(f"1/{p.id}" in store.saved for p in extra.payloads), timeout=5)
    middle = store.thread_of[f"1/{extra.payloads[0].id}"]
    assert store.thread_of[f"1/{extra.payloads[1].id}"] == middle
    assert depths(system) == [2, 0, 2]


def test_a_collection_too_big_for_the_room_left_is_refused_whole_and_never_lands(
    store: GatedStore, tmp_path: Path
) -> None:
    system = start(store, tmp_path, workers=2, max_queue=3)
    fill(system, store, workers=2, max_queue=3)
    door = system.dispatcher()
    store.gate("slot0").set()
    wait_for(lambda: depths(system) == [0, 3], timeout=5)
    store.gate("slot0").clear()
    entered = store.entered
    assert door.admit(payloads({"gate": "slot0"})) == 1
    wait_for(lambda: store.entered == entered + 1, timeout=5)  # held in flight, room 3

    too_many = payloads(*({"n": i} for i in range(4)))
    with pytest.raises(Refused, match="full"):
        door.admit(too_many)
    assert depths(system) == [0, 3]  # nothing of it was placed
    assert system.ledger.snapshot().reserved == 0

    just_fits = payloads(*({"n": i} for i in range(3)))
    assert door.admit(just_fits) == 3
    wait_for(lambda: depths(system) == [3, 3], timeout=5)
    store.open_all()
    wait_for(lambda: system.ledger.snapshot().outstanding == 0, timeout=10)
    assert not {f"1/{p.id}" for p in too_many.payloads} & set(store.saved)
    assert {f"1/{p.id}" for p in just_fits.payloads} <= set(store.saved)


def test_dispatcher_refuses_when_every_mailbox_is_full(store: GatedStore, tmp_path: Path) -> None:
    system = start(store, tmp_path, workers=2, max_queue=1)
    fill(system, store, workers=2, max_queue=1)
    dispatcher = system.dispatcher()
    with pytest.raises(Refused, match="full"):
        dispatcher.submit("1", [{"n": 1}])
    store.gate("slot0").set()
    store.gate("slot1").set()
    wait_for(lambda: depths(system) == [0, 0], timeout=5)
    assert dispatcher.submit("1", [{"n": 1}, {"n": 2}]) == 2


def test_after_shutdown_the_dispatcher_refuses(store: GatedStore, tmp_path: Path) -> None:
    system = start(store, tmp_path, workers=2, max_queue=10)
    store.open_all()
    assert system.drain(timeout=5) == 0
    with pytest.raises(Refused, match="shutting down"):
        system.dispatcher().submit("1", [{"n": 1}])
