"""The supervision tree: crashes restart behaviours with their mailboxes kept, poison messages
are spooled, intensity escalates to the root, and the root gives the process up. Every test
checks, payload by payload, that what was admitted landed or was spooled, once."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actors import ActorSystem, Collection, Payload, Refused
from actors.retry import RestartPolicy
from store.spool import DeadLetterSpool
from tests.support import ANYWHERE, GatedStore, collection, wait_for

FAST = RestartPolicy(max_restarts=5, period=60, backoff_base=0.01, backoff_cap=0.05)


def payloads(*documents: dict[str, Any]) -> Collection:
    return collection(*documents)


def key(payload: Payload) -> str:
    return f"1/{payload.id}"


def events(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", "") == name]


@pytest.fixture
def store() -> Iterator[GatedStore]:
    gated = GatedStore()
    yield gated
    gated.open_all()


@pytest.fixture
def spool(tmp_path: Path) -> DeadLetterSpool:
    return DeadLetterSpool(tmp_path / "spool", ANYWHERE)


def spooled_keys(spool: DeadLetterSpool) -> list[str]:
    return [obj.key for obj in spool.waiting()]


def start(store, spool, *, workers: int, policy: RestartPolicy = FAST, **kw: Any) -> ActorSystem:
    system = ActorSystem(store, spool, workers=workers, max_queue=50, restart_policy=policy, **kw)
    system.start()
    return system


def test_a_crashed_uploader_restarts_with_its_mailbox_and_everything_it_held(
    store, spool, caplog
) -> None:
    caplog.set_level(logging.INFO)
    system = start(store, spool, workers=1)
    uploader = system.uploaders[0]
    door = system.dispatcher()
    held = payloads({"gate": "g"})
    assert door.admit(held) == 1
    wait_for(lambda: store.entered == 1, timeout=5)  # the uploader is busy in a put
    crasher = payloads({"crash_times": 1}, {"n": 1}, {"n": 2})  # one message: crasher first
    behind = payloads({"n": 3})  # queued behind it
    assert door.admit(crasher) == 3
    wait_for(lambda: system.ledger.snapshot().depths == (3,), timeout=5)  # sent on its own
    assert door.admit(behind) == 1
    wait_for(lambda: system.ledger.snapshot().depths == (4,), timeout=5)
    store.gate("g").set()

    everything = [*held.payloads, *crasher.payloads, *behind.payloads]
    wait_for(lambda: len(store.saved) == len(everything), timeout=10)
    assert set(store.saved) == {key(p) for p in everything}
    assert store.seen[key(crasher.payloads[0])] == 2  # crashed once, landed when redone
    assert system.uploaders[0] is uploader and uploader.is_alive()  # same actor, same mailbox
    assert spool.files() == []
    assert system.ledger.snapshot().outstanding == 0

    crash = events(caplog, "actor_crashed")[0]
    assert (crash.actor, crash.in_flight, crash.in_hand, crash.queued) == ("uploader[0]", 1, 2, 1)
    assert "RuntimeError: injected bug" in crash.cause
    assert "its mailbox is kept" in crash.getMessage()
    restart = events(caplog, "actor_restarted")[0]
    assert (restart.actor, restart.redelivered) == ("uploader[0]", 3)


def test_a_poison_message_is_spooled_after_three_crashes_and_the_rest_lands(
    store, spool, caplog
) -> None:
    system = start(store, spool, workers=2)
    batch = payloads({"boom": True}, *({"n": i} for i in range(1, 8)))
    assert system.dispatcher().admit(batch) == 8

    wait_for(lambda: spool.files() and len(store.saved) == 7, timeout=10)
    assert set(store.saved) == {key(p) for p in batch.payloads[1:]}
    # Encoding it is what crashes, so it is spooled raw, under its own prefix.
    assert spooled_keys(spool) == [f"unencodable/{batch.payloads[0].id}.json"]
    assert store.seen[key(batch.payloads[0])] == 4  # three crashes, and a try before spooling
    poison = events(caplog, "poison_message")
    assert [r.payload for r in poison] == [batch.payloads[0].id]
    assert all(ref.is_alive() for ref in system.uploaders)
    assert system.dispatcher().admit(payloads({"n": 9})) == 1  # the slot carries on


def test_intensity_exceeded_escalates_and_the_root_restarts_the_level(store, spool, caplog) -> None:
    exhausted: list[str] = []
    policy = RestartPolicy(max_restarts=1, period=60, backoff_base=0.01, poison_after=100)
    system = start(store, spool, workers=1, policy=policy, on_exhausted=exhausted.append)
    crasher = payloads({"crash_times": 3}, {"n": 1})
    assert system.dispatcher().admit(crasher) == 2

    wait_for(lambda: len(store.saved) == 2, timeout=10)
    assert store.seen[key(crasher.payloads[0])] == 4
    assert [r.supervisor for r in events(caplog, "escalated")] == ["uploaders"]
    assert len(events(caplog, "level_restarted")) == 1
    assert exhausted == [] and system.gave_up is None
    assert system.dispatcher().admit(payloads({"n": 2})) == 1  # still serving, slot kept


def test_when_the_root_gives_up_the_process_stops_admitting_and_spools_what_it_held(
    store, spool, caplog
) -> None:
    exhausted: list[str] = []
    policy = RestartPolicy(max_restarts=1, period=60, backoff_base=0.01, poison_after=100)
    system = start(store, spool, workers=1, policy=policy, on_exhausted=exhausted.append)
    crasher = payloads({"crash_times": 50}, {"n": 1})
    assert system.dispatcher().admit(crasher) == 2

    wait_for(lambda: exhausted, timeout=10)
    assert "uploaders crashed" in exhausted[0]
    wait_for(lambda: system.ledger.snapshot().outstanding == 0, timeout=10)
    # The crasher cannot be encoded, so it is spooled raw; the payload behind it as it is.
    raw = f"unencodable/{crasher.payloads[0].id}.json"
    assert sorted(spooled_keys(spool)) == [key(crasher.payloads[1]), raw]
    assert store.saved == {}
    with pytest.raises(Refused, match="shutting down"):
        system.dispatcher().admit(payloads({"n": 2}))
    escalations = [r.supervisor for r in events(caplog, "escalated")]
    assert escalations == ["uploaders", "uploaders", "root"]  # granted once, then the root
    assert len(events(caplog, "gave_up")) == 1
    assert system.drain(timeout=5) == 0


def test_what_a_crash_during_shutdown_held_is_spooled_or_landed_never_lost(store, spool) -> None:
    system = start(store, spool, workers=1)
    batch = payloads({"gate": "g"}, {"boom": True}, {"n": 2})
    assert system.dispatcher().admit(batch) == 3
    wait_for(lambda: store.entered == 1, timeout=5)
    store.gate("g").set()
    assert system.drain(timeout=5) == 0

    assert set(store.saved) == {key(batch.payloads[0]), key(batch.payloads[2])}
    assert spooled_keys(spool) == [f"unencodable/{batch.payloads[1].id}.json"]
    assert system.ledger.snapshot().outstanding == 0
