"""Drain-aware admission: never owe more than a shutdown can store at S3's measured pace."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import orjson
import pytest
import requests

from actors.drain import DrainBudget
from actors.ledger import S3_SLOW, Ledger
from actors.messages import Collection
from bench.s3sink import S3Sink
from tests.support import ServiceProcess, sink_env, wait_for


def payloads(n: int, start: int = 0) -> Collection:
    return Collection(f"c{start}", "1", 0.0, tuple({"n": i} for i in range(start, start + n)))


def test_the_budget_is_what_the_uploaders_store_in_half_the_drain() -> None:
    budget = DrainBudget(uploaders=8, drain_seconds=25)
    assert budget.limit() == 8 / 0.1 * 12.5  # nothing measured yet: S3 assumed at 100 ms
    for _ in range(50):
        budget.record(1, 0.1)  # S3 at 100 ms: 8 uploaders store 80 a second
    estimate = budget.estimate()
    assert estimate.payloads_per_second == pytest.approx(80, rel=0.01)
    assert budget.limit() == pytest.approx(80 * 12.5, rel=0.01)
    for _ in range(100):
        budget.record(1, 0.03)  # S3 speeds up: the limit follows
    assert budget.limit() == pytest.approx(8 / 0.03 * 12.5, rel=0.05)


def test_a_stalled_s3_still_lets_one_payload_per_uploader_in() -> None:
    budget = DrainBudget(uploaders=4, drain_seconds=10)
    for _ in range(5):
        budget.record(1, 120.0)  # each retried for two minutes
    assert budget.limit() == 4


def test_the_ledger_refuses_past_the_budget_and_admits_again_once_settled() -> None:
    budget = DrainBudget(uploaders=2, drain_seconds=10)
    for _ in range(200):
        budget.record(1, 0.5)  # 4 a second: 20 in half of 10 s
    ledger = Ledger(2, 1000, budget)
    first = payloads(18)
    assert ledger.admit(first) is None
    assert ledger.admit(payloads(3, 18)) == S3_SLOW  # 21 > 20, though mailboxes have room
    assert ledger.admit(payloads(2, 18)) is None  # 20 fits
    ledger.settle(first.parts, landed=True)
    assert ledger.admit(payloads(10, 40)) is None
    assert ledger.snapshot().outstanding == 12


def test_a_large_collection_gets_in_when_nothing_is_owed() -> None:
    budget = DrainBudget(uploaders=1, drain_seconds=2)
    for _ in range(50):
        budget.record(1, 1.0)  # limit: 1
    ledger = Ledger(1, 100, budget)
    assert ledger.admit(payloads(5)) is None  # refused for ever otherwise
    assert ledger.admit(payloads(1, 5)) == S3_SLOW


def test_sigterm_under_full_load_with_a_slow_s3_spools_nothing(
    sink: S3Sink, tmp_path: Path
) -> None:
    """S3 at 100 ms; 4 uploaders x 1,000 payloads of mailbox would take 100 s to drain.

    Admission follows S3's pace instead: the clients get 503 (naming S3's pace) while S3 is
    slow, and a SIGTERM in the middle of the load drains within SHUTDOWN_TIMEOUT, exits 0,
    spools nothing, and every acknowledged payload lands.
    """
    sink.latency = 0.1
    spool_dir = tmp_path / "spool"
    env = sink_env(
        sink, spool_dir, MAX_WORKERS="4", MAX_QUEUE="1000", SHUTDOWN_TIMEOUT="6", SERVER="granian"
    )
    service = ServiceProcess(env).start()
    acked: list[int] = []
    refusals: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(which: int) -> None:
        with requests.Session() as http:
            for n in range(400):  # bounded: 400 posts or the stop, whichever comes first
                if stop.is_set():
                    return
                data = [{"c": which, "n": n, "i": i} for i in range(5)]
                body = {"version": "1", "token": "t", "data": data}
                try:
                    answer = http.post(service.url + "/payloads", json=body, timeout=10)
                except requests.RequestException:
                    return  # the service has closed its listener
                with lock:
                    if answer.status_code == 202:
                        acked.extend(which * 100_000 + n * 10 + i for i in range(5))
                    elif answer.status_code == 503:
                        refusals.append(answer.json()["message"])
                time.sleep(0.01)

    clients = [threading.Thread(target=client, args=(c,)) for c in range(6)]
    for thread in clients:
        thread.start()
    try:
        time.sleep(2)  # full load for a while: S3's pace measured, mailboxes at the budget
        wait_for(lambda: len(refusals) >= 20, timeout=20)
        started = time.monotonic()
        code, log = service.stop(timeout=20)
        took = time.monotonic() - started
    finally:
        stop.set()
        for thread in clients:
            thread.join(timeout=15)
    assert code == 0, log
    assert took < 6 + 2, f"drained in {took:.1f} s"
    assert any("S3 is storing slowly" in message for message in refusals), refusals[:3]
    assert not list(spool_dir.glob("*.spool")), f"a slow S3 made the drain spool:\n{log[-3000:]}"
    landed = {
        doc["c"] * 100_000 + doc["n"] * 10 + doc["i"]
        for doc in (orjson.loads(obj.body) for obj in sink.objects.values())
    }
    assert set(acked) <= landed
    assert len(acked) > 100  # it really was under load and accepting
