"""Faults made to happen in the actor core, each checked payload by payload: a spool that cannot
be written while S3 fails, a router that crashes or stalls, an S3 answer that is not UTF-8, and
a drain during an outage. Nothing admitted is lost; nothing refused ever lands."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from actors import ActorSystem, Collection, Refused
from actors.batching import BatchLimits
from actors.messages import Unit
from actors.retry import Backoff, RestartPolicy
from actors.router import Router
from store import open_s3
from tests.support import BrokenSpool, FlakyStore, RecordingStore, collection, wait_for

FAST = RestartPolicy(backoff_base=0.01, backoff_cap=0.05)


def payloads(n: int, **extra: Any) -> Collection:
    return collection(*({"n": i, **extra} for i in range(n)))


def keys(*collections: Collection) -> set[str]:
    return {f"1/{p.id}" for each in collections for p in each.payloads}


def start(store: Any, spool: Any, **kw: Any) -> ActorSystem:
    options = {"workers": 2, "max_queue": 5, "restart_policy": FAST} | kw
    system = ActorSystem(store, spool, **options)
    system.start()
    return system


def both_failing(tmp_path: Path) -> tuple[FlakyStore, BrokenSpool, ActorSystem]:
    """S3 down and the spool unwritable (a full disk), with a short retry budget."""
    store, spool = FlakyStore(), BrokenSpool(tmp_path / "spool")
    store.down = spool.broken = True
    system = start(store, spool, backoff=Backoff(base=0.01, cap=0.05, budget=0.1))
    return store, spool, system


def test_s3_and_the_spool_failing_together_lose_nothing_and_the_service_comes_back(
    tmp_path: Path,
) -> None:
    store, spool, system = both_failing(tmp_path)
    door = system.dispatcher()
    admitted = [payloads(2)]
    assert door.admit(admitted[0]) == 2
    wait_for(lambda: spool.failures >= 2, timeout=10)  # each uploader holds one, stalled
    refused: list[Collection] = []
    for _ in range(6):
        batch = payloads(2)
        try:
            door.admit(batch)
            admitted.append(batch)
        except Refused:
            refused.append(batch)
    # Held in memory, not lost; the mailboxes fill (2 x 5), then new work is refused whole.
    assert sum(c.size for c in admitted) == 12 and sum(c.size for c in refused) == 2
    assert system.ledger.snapshot().outstanding == 12
    assert system.snapshot().spool_error is not None
    assert "No space left" in system.snapshot().spool_error
    with pytest.raises(Refused, match="full"):
        door.admit(payloads(1))

    spool.broken = False  # the disk comes back first: what S3 still refuses is spooled
    wait_for(lambda: system.ledger.snapshot().outstanding == 0, timeout=15)
    assert system.snapshot().spool_error is None
    store.down = False  # then S3: the service serves again, without a restart
    more = payloads(3)
    assert door.admit(more) == 3
    wait_for(lambda: keys(more) <= set(store.saved), timeout=10)

    spooled = spool.keys()
    assert len(spooled) == len(set(spooled))  # each once
    assert set(spooled) | set(store.saved) == keys(*admitted) | keys(more)
    assert not (set(spooled) | set(store.saved)) & keys(*refused)


def test_spool_failing_while_s3_fails_then_s3_heals_lands_everything_in_s3(
    tmp_path: Path,
) -> None:
    store, spool, system = both_failing(tmp_path)
    batch = payloads(6)
    assert system.dispatcher().admit(batch) == 6
    wait_for(lambda: spool.failures >= 2, timeout=10)
    store.down = False
    wait_for(lambda: system.ledger.snapshot().outstanding == 0, timeout=15)
    assert set(store.saved) == keys(batch)
    assert spool.keys() == []


def test_a_router_crash_is_restarted_and_its_collection_placed_once(
    monkeypatch, tmp_path: Path
) -> None:
    plan = Router._plan
    crashes = []

    def crash_once(self: Router, batch: Unit) -> Any:
        if not crashes:
            crashes.append(1)
            raise RuntimeError("injected router bug")
        return plan(self, batch)

    monkeypatch.setattr(Router, "_plan", crash_once)
    store = RecordingStore()
    spool = BrokenSpool(tmp_path / "spool")
    system = start(store, spool)
    router = system.router
    first, second = payloads(4), payloads(2)
    assert system.dispatcher().admit(first) == 4
    assert system.dispatcher().admit(second) == 2
    wait_for(lambda: len(store.saved) == 6, timeout=10)
    assert set(store.saved) == keys(first) | keys(second)
    assert store.puts == 6  # each once
    assert system.router is router and router.is_alive()
    assert crashes == [1]
    assert spool.keys() == []


def test_a_collection_refused_while_the_router_stalls_never_lands(
    monkeypatch, tmp_path: Path
) -> None:
    plan = Router._plan
    stalled = threading.Event()
    release = threading.Event()

    def stall_first(self: Router, batch: Unit) -> Any:
        if not stalled.is_set():
            stalled.set()
            release.wait(30)
        return plan(self, batch)

    monkeypatch.setattr(Router, "_plan", stall_first)
    store = RecordingStore()
    spool = BrokenSpool(tmp_path / "spool")
    system = start(store, spool)
    door = system.dispatcher()
    admitted = payloads(10)
    assert door.admit(admitted) == 10  # the router stalls placing it: room is all reserved
    stalled.wait(5)
    refused = payloads(1)
    started = time.monotonic()
    with pytest.raises(Refused, match="full"):
        door.admit(refused)
    assert time.monotonic() - started < 1  # decided at once, not after a timeout
    release.set()

    wait_for(lambda: len(store.saved) == 10, timeout=10)
    later = payloads(1)
    assert door.admit(later) == 1
    wait_for(lambda: len(store.saved) == 11, timeout=10)
    assert set(store.saved) == keys(admitted) | keys(later)
    assert spool.keys() == []


@pytest.mark.parametrize("s3_put", ["direct", "boto3"])
def test_an_s3_error_that_is_not_utf8_is_retried_and_no_uploader_is_lost(
    sink, tmp_path: Path, s3_put: str
) -> None:
    store = open_s3(
        bucket="sink",
        prefix="p/",
        pool_size=2,
        endpoint_url=sink.endpoint,
        credentials={"aws_access_key_id": "k", "aws_secret_access_key": "s"},
        region="us-east-1",
        direct_put=s3_put == "direct",
    )
    sink.garbage_errors(1.0)
    system = start(
        store, BrokenSpool(tmp_path / "spool"), backoff=Backoff(base=0.01, cap=0.05, budget=60)
    )
    batch = payloads(6)
    assert system.dispatcher().admit(batch) == 6
    wait_for(lambda: sink.stats.failed_puts >= 12, timeout=10)
    sink.reset_faults()
    wait_for(lambda: sink.payload_count() == 6, timeout=15)
    assert system.ledger.snapshot().outstanding == 0
    assert all(ref.is_alive() for ref in system.uploaders)
    assert sink.stats.overwrites == 0


def test_backoff_holds_while_draining_during_an_outage(tmp_path: Path) -> None:
    store, spool = FlakyStore(), BrokenSpool(tmp_path / "spool")
    store.down = True
    system = start(store, spool, workers=4, backoff=Backoff(base=0.05, cap=0.4, budget=600))
    batch = payloads(8)
    assert system.dispatcher().admit(batch) == 8
    time.sleep(2.0)  # backoff reaches its cap
    before = store.attempts
    time.sleep(2.0)
    rate_serving = (store.attempts - before) / 2.0
    drained = threading.Thread(target=system.drain, args=(6.0,))
    drained.start()
    time.sleep(0.2)
    before = store.attempts
    time.sleep(2.0)
    rate_draining = (store.attempts - before) / 2.0
    drained.join(10)
    assert rate_draining <= 2 * max(rate_serving, 1.0), (rate_serving, rate_draining)
    assert sorted(spool.keys()) == sorted(keys(batch))  # swept at the deadline, each once
    assert system.ledger.snapshot().outstanding == 0


def test_a_collection_that_keeps_crashing_the_router_is_spooled_and_frees_its_room(
    monkeypatch, tmp_path: Path
) -> None:
    plan = Router._plan

    def choke_on_poison(self: Router, batch: Unit) -> Any:
        if any(p.document.get("poison") for p in batch.payloads):
            raise RuntimeError("injected router bug")
        return plan(self, batch)

    monkeypatch.setattr(Router, "_plan", choke_on_poison)
    store, spool = RecordingStore(), BrokenSpool(tmp_path / "spool")
    system = start(store, spool)  # room: 2 x 5
    poison = payloads(4, poison=True)
    assert system.dispatcher().admit(poison) == 4
    wait_for(lambda: spool.keys(), timeout=10)
    assert sorted(spool.keys()) == sorted(keys(poison))
    assert system.ledger.snapshot().reserved == 0
    full = payloads(10)
    assert system.dispatcher().admit(full) == 10  # every slot of room came back
    wait_for(lambda: set(store.saved) == keys(full), timeout=10)
    assert system.router.is_alive()


def test_a_router_crash_while_holding_planned_payloads_loses_and_repeats_none(
    monkeypatch, tmp_path: Path
) -> None:
    """Under load the router holds planned payloads until its mailbox is empty; a crash then
    hands them, unsent and unplaced, to the new router with the collection it was on."""
    plan = Router._plan
    release = threading.Event()
    calls: list[int] = []

    def stall_then_crash(self: Router, batch: Unit) -> Any:
        calls.append(batch.size)
        if len(calls) == 1:
            release.wait(30)  # Routes queue up behind the first
        if batch.payloads[0].document.get("crash") and calls.count(batch.size) == 1:
            raise RuntimeError("injected router bug")
        return plan(self, batch)

    monkeypatch.setattr(Router, "_plan", stall_then_crash)
    store, spool = RecordingStore(), BrokenSpool(tmp_path / "spool")
    batched = BatchLimits(max_payloads=1000, max_wait=0.05)  # the mode where the router holds
    system = start(store, spool, max_queue=100, batch_limits=batched)
    door = system.dispatcher()
    first, second = payloads(2, tag="first"), payloads(3, tag="second")
    crasher = payloads(4, tag="crasher", crash=True)
    for batch in (first, second, crasher):
        assert door.admit(batch) == batch.size
    release.set()

    def landed() -> list[tuple[str, int]]:
        return sorted((d["tag"], d["n"]) for docs in store.saved.values() for d in docs)

    sent = sorted(
        (p.document["tag"], p.document["n"]) for c in (first, second, crasher) for p in c.payloads
    )
    wait_for(lambda: len(landed()) == 9, timeout=10)
    assert landed() == sent  # each payload once, in whatever batches
    assert calls.count(4) == 2  # the crasher crashed the first router, the second placed it
    assert 5 in calls  # the two held collections, handed over unsent, replanned as one
    snapshot = system.ledger.snapshot()
    assert (snapshot.depths, snapshot.reserved, snapshot.outstanding) == ((0, 0), 0, 0)
    assert spool.keys() == []
