"""One layout for every payload (issue 18, items 1-2): nothing but payloads under S3_PREFIX,
and a resend sent with an Idempotency-Key stored once, in the partition of its first
acceptance, whichever process or host handles it, even through the spool."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import requests

from actors import ActorSystem
from actors.dispatcher import Dispatcher
from actors.retry import Backoff
from bench.s3sink import S3Sink
from store.replay import replay
from store.spool import DeadLetterSpool
from tests.support import (
    ROOT,
    ServiceProcess,
    sink_destination,
    sink_env,
    sink_store,
    wait_for,
)

KEY = {"Idempotency-Key": "order-4711"}


def post(url: str, data: list[dict], **headers: str) -> requests.Response:
    body = {"version": "1", "token": "t", "data": data}
    return requests.post(url + "/payloads", json=body, headers=headers, timeout=15)


def partition_of(key: str) -> str:
    """`dt=.../hour=...` of a key under payloads/."""
    return "/".join(key.split("/")[1:3])


def test_the_start_check_writes_outside_the_data_prefix(sink: S3Sink, tmp_path: Path) -> None:
    service = ServiceProcess(sink_env(sink, tmp_path / "spool", S3_CHECK="strict")).start()
    try:
        assert post(service.url, [{"n": 1}]).status_code == 202
        wait_for(lambda: sink.payload_count() == 1, timeout=20)
    finally:
        code, log = service.stop()
    assert code == 0, log
    assert "state/write-check" in sink.objects
    under_prefix = [k for k in sink.objects if k.startswith("payloads/")]
    assert len(under_prefix) == 1 and orjson.loads(sink.objects[under_prefix[0]].body) == {"n": 1}


def test_overlapping_prefixes_stop_the_start_with_one_line(tmp_path: Path) -> None:
    for overlapping in (
        {"S3_ERROR_PREFIX": "payloads/errors"},  # dead letters inside the data
        {"S3_PREFIX": "data/payloads", "S3_STATE_PREFIX": "data"},  # data inside the state
    ):
        done = subprocess.run(
            [sys.executable, "-m", "mailroom", "serve"],
            cwd=ROOT,
            env={**os.environ, "SPOOL_DIR": str(tmp_path / "spool"), **overlapping},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, done.stderr
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "overlaps" in lines[0], done.stderr
        assert lines[0].startswith("mailroom: configuration error: ")


def test_a_resend_through_another_process_lands_once_under_the_first_keys(
    sink: S3Sink, tmp_path: Path
) -> None:
    env = sink_env(sink, tmp_path / "spool", ACK_MODE="stored")
    data = [{"reading": n} for n in range(3)]
    one, two = ServiceProcess(env).start(), ServiceProcess(env).start()
    try:
        first = post(one.url, data, **KEY)
        again = post(two.url, data, **KEY)  # the client's answer was lost; another process
        both = [dict(KEY, **{"Idempotency-Key": "order-4712"})] * 4
        with ThreadPoolExecutor(4) as pool:  # one more key, sent to both processes at once
            racing = list(
                pool.map(
                    lambda pair: post(pair[0].url, data, **pair[1]),
                    zip([one, two, one, two], both, strict=True),
                )
            )
    finally:
        for service in (one, two):
            code, log = service.stop()
            assert code == 0, log
    assert first.status_code == again.status_code == 200, (first.text, again.text)
    assert first.json()["repeat"] is False and again.json()["repeat"] is True
    keys = [r["key"] for r in first.json()["receipts"]]
    assert keys == [r["key"] for r in again.json()["receipts"]]
    assert all(k.startswith("payloads/dt=") and "/version=1/" in k for k in keys)
    assert [r.status_code for r in racing] == [200] * 4
    raced = {tuple(r["key"] for r in answer.json()["receipts"]) for answer in racing}
    assert len(raced) == 1  # four senders, two processes: one set of keys
    stored = [k for k in sink.objects if k.startswith("payloads/")]
    assert len(stored) == 6 and sink.stats.overwrites == 0  # 3 payloads x 2 keys
    assert sorted(k.split("/")[0] for k in sink.objects) == ["payloads"] * 6 + ["state"] * 2


def test_a_resend_hours_later_keeps_the_partition_of_its_first_acceptance(
    sink: S3Sink, tmp_path: Path
) -> None:
    first_at = 1_795_957_511.123  # 2026-11-29 13:05 UTC
    stored: list[tuple[str, int | None]] = []
    for accepted_at in (first_at, first_at + 3 * 3600):  # two processes, three hours apart
        system = ActorSystem(
            sink_store(sink),
            DeadLetterSpool(tmp_path / "spool", sink_destination(sink)),
            workers=2,
            max_queue=10,
        )
        system.start()
        door = Dispatcher(system.router, system.ledger, clock=lambda t=accepted_at: t)
        try:
            tracking = door.track("1", [{"n": 1}, {"n": 2}], "acme", idempotency_key="k-1")
            assert tracking.wait(20)
            outcome = tracking.outcome()
        finally:
            system.drain(5)
        stored.append((outcome.locations[0][0], outcome.existed))
    (first_key, first_existed), (later_key, later_existed) = stored
    assert first_key == later_key
    assert first_key.startswith("payloads/tenant=acme/dt=2026-11-29/hour=13/version=1/")
    assert (first_existed, later_existed) == (0, 2)  # the resend found both payloads stored
    assert len([k for k in sink.objects if k.startswith("payloads/")]) == 2


def test_a_first_acceptance_spooled_while_s3_was_down_is_claimed_by_its_replay(
    sink: S3Sink, tmp_path: Path
) -> None:
    spool = DeadLetterSpool(tmp_path / "spool", sink_destination(sink))
    accepted_at = 1_795_957_511.0
    sink.go_down_for(60)
    system = ActorSystem(
        sink_store(sink),
        spool,
        workers=1,
        max_queue=10,
        backoff=Backoff(base=0.01, cap=0.05, budget=0.2),
    )
    system.start()
    door = Dispatcher(system.router, system.ledger, clock=lambda: accepted_at)
    try:
        tracking = door.track("1", [{"n": 1}, {"n": 2}], idempotency_key="down-1")
        assert tracking.wait(20) and tracking.outcome().spooled == 2
    finally:
        system.drain(5)
    spooled = sorted({obj.key for obj in spool.waiting()})  # each payload with its marker
    assert len(spooled) == 3 and spooled[2].startswith("state/idempotency/")
    sink.reset_faults()
    tally = replay(spool, sink_store(sink).put, concurrency=2)
    assert tally.objects_failed == 0 and set(spooled) <= set(sink.objects)
    # A resend hours later, in another process: the replayed marker gives it the same keys.
    system = ActorSystem(sink_store(sink), spool, workers=1, max_queue=10)
    system.start()
    door = Dispatcher(system.router, system.ledger, clock=lambda: accepted_at + 7200)
    try:
        tracking = door.track("1", [{"n": 1}, {"n": 2}], idempotency_key="down-1")
        assert tracking.wait(20)
        outcome = tracking.outcome()
    finally:
        system.drain(5)
    assert outcome.existed == 2 and {k for k, _ in outcome.locations} <= set(spooled)


def test_batched_resends_are_batched_again_with_the_same_line_ids(
    sink: S3Sink, tmp_path: Path
) -> None:
    env = sink_env(
        sink,
        tmp_path / "spool",
        ACK_MODE="stored",
        BATCH_MAX_PAYLOADS="50",
        BATCH_MAX_WAIT_MS="50",
        BATCH_LINE_IDS="true",
    )
    service = ServiceProcess(env).start()
    try:
        answers = [post(service.url, [{"n": 1}, {"n": 2}], **KEY) for _ in range(2)]
    finally:
        code, log = service.stop()
    assert code == 0, log
    assert [a.status_code for a in answers] == [200, 200]
    lines = [
        orjson.loads(line)
        for key, obj in sink.objects.items()
        if key.startswith("payloads/dt=")
        for line in obj.body.splitlines()
    ]
    assert len(lines) == 4 and len({line["id"] for line in lines}) == 2  # a reader drops 2
    assert not [k for k in sink.objects if not k.startswith("payloads/")]  # no marker


def test_every_acceptance_of_a_batch_keeps_its_own_hour(tmp_path: Path, sink: S3Sink) -> None:
    """A batch never spans two hours: a collection accepted after the hour turned opens a
    batch of its own, so each payload is in the partition of its own acceptance."""
    from actors.batching import BatchLimits

    system = ActorSystem(
        sink_store(sink),
        DeadLetterSpool(tmp_path / "spool", sink_destination(sink)),
        workers=1,
        max_queue=100,
        batch_limits=BatchLimits(max_payloads=100, max_wait=0.2),
    )
    system.start()
    moments = iter([1_795_957_199.9, 1_795_957_200.1])  # 12:59:59.9, then 13:00:00.1
    door = Dispatcher(system.router, system.ledger, clock=lambda: next(moments))
    try:
        door.submit("1", [{"at": "12h"}])
        door.submit("1", [{"at": "13h"}])
        wait_for(lambda: sink.payload_count() == 2, timeout=20)
    finally:
        system.drain(5)
    hours = {orjson.loads(obj.body)["at"]: partition_of(key) for key, obj in sink.objects.items()}
    assert hours == {"12h": "dt=2026-11-29/hour=12", "13h": "dt=2026-11-29/hour=13"}
