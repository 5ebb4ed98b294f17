from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pykka
import pytest

from actors import ActorSystem, Payload, Refused
from actors.messages import Route, Routed
from tests.support import GatedStore, wait_for

_ids = itertools.count()


class NoSpool:
    """These tests never spool; if they did, it would be a failure."""

    def write(self, objects: list[Any], *, reason: str) -> None:
        raise AssertionError(f"unexpected spool write: {reason}")


NO_SPOOL = NoSpool()


def payloads(*documents: dict[str, Any]) -> list[Payload]:
    return [Payload(f"p{next(_ids)}", "1", 0.0, doc) for doc in documents]


def route(router: pykka.ActorRef[Any], batch: list[Payload]) -> Routed:
    return router.ask(Route(batch), timeout=5)


def depths(system: ActorSystem) -> list[int]:
    return [slot.depth for slot in system.status().slots]


@pytest.fixture
def store() -> Iterator[GatedStore]:
    gated = GatedStore()
    yield gated
    gated.open_all()  # let held uploads finish so the actors can stop


def start(store: GatedStore, workers: int, max_queue: int) -> ActorSystem:
    system = ActorSystem(store, NO_SPOOL, workers=workers, max_queue=max_queue)
    system.start()
    return system


def test_payloads_are_spread_round_robin(store: GatedStore) -> None:
    system = start(store, workers=4, max_queue=100)
    batch = payloads(*({"n": i} for i in range(12)))
    assert route(system.router, batch) == Routed(12)
    wait_for(lambda: len(store.saved) == 12, timeout=5)
    threads = [store.thread_of[f"1/{p.id}"] for p in batch]
    assert len(set(threads[:4])) == 4
    assert threads[4:8] == threads[:4]
    assert threads[8:] == threads[:4]


def fill(system: ActorSystem, store: GatedStore, workers: int, max_queue: int) -> None:
    """Park one held payload in each uploader, then fill every mailbox to its bound."""
    held = payloads(*({"gate": f"slot{i}"} for i in range(workers)))
    assert route(system.router, held).accepted == workers
    wait_for(lambda: store.entered == workers, timeout=5)
    queued = payloads(*({"gate": f"slot{i % workers}"} for i in range(workers * max_queue)))
    assert route(system.router, queued).accepted == workers * max_queue
    assert depths(system) == [max_queue] * workers


def test_a_full_mailbox_is_skipped_for_the_next_with_room(store: GatedStore) -> None:
    system = start(store, workers=3, max_queue=2)
    fill(system, store, workers=3, max_queue=2)
    store.gate("slot1").set()  # only the middle uploader drains
    wait_for(lambda: depths(system) == [2, 0, 2], timeout=5)

    extra = payloads({"n": 1}, {"n": 2})
    assert route(system.router, extra) == Routed(2)
    wait_for(lambda: all(f"1/{p.id}" in store.saved for p in extra), timeout=5)
    middle = store.thread_of[f"1/{extra[0].id}"]
    assert store.thread_of[f"1/{extra[1].id}"] == middle
    assert depths(system) == [2, 0, 2]


def test_a_collection_too_big_for_the_room_left_is_refused_whole(store: GatedStore) -> None:
    system = start(store, workers=2, max_queue=3)
    fill(system, store, workers=2, max_queue=3)
    store.gate("slot0").set()
    wait_for(lambda: depths(system) == [0, 3], timeout=5)
    store.gate("slot0").clear()
    hold_first = payloads({"gate": "slot0"})
    assert route(system.router, hold_first) == Routed(1)
    wait_for(lambda: depths(system)[0] == 0, timeout=5)  # held in flight, room 3

    too_many = payloads(*({"n": i} for i in range(4)))
    answer = route(system.router, too_many)
    assert answer.accepted == 0
    assert "full" in answer.reason
    assert depths(system) == [0, 3]  # nothing of it was placed

    just_fits = payloads(*({"n": i} for i in range(3)))
    assert route(system.router, just_fits) == Routed(3)
    assert depths(system) == [3, 3]


def test_dispatcher_raises_refused_when_every_mailbox_is_full(store: GatedStore) -> None:
    system = start(store, workers=2, max_queue=1)
    fill(system, store, workers=2, max_queue=1)
    dispatcher = system.dispatcher()
    with pytest.raises(Refused, match="full"):
        dispatcher.submit("1", [{"n": 1}])
    store.gate("slot0").set()
    store.gate("slot1").set()
    wait_for(lambda: depths(system) == [0, 0], timeout=5)
    assert dispatcher.submit("1", [{"n": 1}, {"n": 2}]) == 2


def test_with_no_uploader_alive_the_router_refuses(store: GatedStore) -> None:
    system = start(store, workers=2, max_queue=10)
    for ref in system.uploaders:
        ref.stop(block=True)
    answer = route(system.router, payloads({"n": 1}))
    assert answer.accepted == 0
    assert answer.reason == "no uploader is running"
    assert system.router.is_alive()
