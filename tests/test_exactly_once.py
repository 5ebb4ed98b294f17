"""Exactly once in S3, through the S3 wire protocol (the stand-in honours If-None-Match and
Content-MD5, and can lie): idempotency keys, conditional writes, receipts, dead letters."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import requests

from actors import ActorSystem, Collection
from actors.retry import RestartPolicy
from bench.s3sink import S3Sink
from store import S3Object, StoreError
from store.spool import DeadLetterSpool
from tests.support import (
    ROOT,
    ServiceProcess,
    replay_spool,
    sink_destination,
    sink_env,
    sink_store,
    wait_for,
)


def post(url: str, data: list[dict], **headers: str) -> requests.Response:
    body = {"version": "1", "token": "t", "data": data}
    return requests.post(url + "/payloads", json=body, headers=headers, timeout=15)


def test_a_resent_collection_with_its_idempotency_key_is_stored_once(
    sink: S3Sink, tmp_path: Path
) -> None:
    env = sink_env(sink, tmp_path / "spool", ACK_MODE="stored")
    data = [{"reading": n} for n in range(3)]
    first = ServiceProcess(env).start()
    try:
        answer = post(first.url, data, **{"Idempotency-Key": "order-7781"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["repeat"] is False
        again = post(first.url, data, **{"Idempotency-Key": "order-7781"})  # answer was lost
        assert again.status_code == 200 and again.json()["repeat"] is True
    finally:
        code, log = first.stop()
    assert code == 0, log
    second = ServiceProcess(env).start()  # another process (another host, as far as S3 knows)
    try:
        later = post(second.url, data, **{"Idempotency-Key": "order-7781"})
        assert later.status_code == 200 and later.json()["repeat"] is True
        other = post(second.url, data, **{"Idempotency-Key": "order-7782"})
        assert other.json()["repeat"] is False
    finally:
        code, log = second.stop()
    assert code == 0, log
    stored = sorted(k for k in sink.objects if k.startswith("payloads/dt="))
    assert len(stored) == 6  # 3 payloads x 2 keys, however often sent
    markers = [k for k in sink.objects if k.startswith("state/idempotency/")]
    assert len(markers) == 2  # one per collection as sent, outside the data prefix
    assert sink.stats.overwrites == 0
    receipts = {r["key"] for r in answer.json()["receipts"]}
    assert len(receipts) == 3 and receipts <= set(stored)
    assert receipts == {r["key"] for r in later.json()["receipts"]}  # the same keys


def test_receipts_name_the_keys_and_lines_that_exist(sink: S3Sink, tmp_path: Path) -> None:
    for batched in (False, True):
        extra = {"BATCH_MAX_PAYLOADS": "100", "BATCH_MAX_WAIT_MS": "50"} if batched else {}
        env = sink_env(sink, tmp_path / f"spool-{batched}", ACK_MODE="stored", **extra)
        service = ServiceProcess(env).start()
        try:
            data = [{"batched": batched, "n": n} for n in range(4)]
            answer = post(service.url, data)
        finally:
            code, log = service.stop()
        assert code == 0, log
        assert answer.status_code == 200, answer.text
        receipts = answer.json()["receipts"]
        assert len(receipts) == 4
        for sent, receipt in zip(data, receipts, strict=True):
            stored = sink.objects[receipt["key"]].body
            if batched:
                line = stored.splitlines()[receipt["line"] - 1]
                assert orjson.loads(line) == sent
            else:
                assert receipt["line"] is None and orjson.loads(stored) == sent


def test_a_replay_of_objects_that_already_landed_overwrites_nothing(
    sink: S3Sink, tmp_path: Path
) -> None:
    store = sink_store(sink)
    landed = [S3Object(f"payloads/x/{n}.json", b'{"first":%d}' % n) for n in range(5)]
    for obj in landed:
        assert store.put(obj) is True
    spool = DeadLetterSpool(tmp_path / "spool", sink_destination(sink))
    spool.write(  # the same keys, spooled by a drain that did not know they had landed
        [S3Object(obj.key, b'{"second":1}') for obj in landed], reason="test"
    )
    replay_spool(sink_env(sink, spool.directory))
    assert spool.files() == []
    assert all(sink.objects[obj.key].body == obj.body for obj in landed)  # the first write
    assert sink.stats.overwrites == 0 and sink.stats.precondition_failed == 5


def test_two_concurrent_replayers_of_the_same_objects_overwrite_nothing(
    sink: S3Sink, tmp_path: Path
) -> None:
    sink.latency = 0.01
    objects = [S3Object(f"payloads/y/{n}.json", b'{"n":%d}' % n) for n in range(200)]
    runs = []
    for name in ("a", "b"):  # e.g. a copy of a spool restored on a second host
        spool = DeadLetterSpool(tmp_path / name, sink_destination(sink))
        for start in range(0, 200, 50):
            spool.write(objects[start : start + 50], reason="test")
        runs.append(
            subprocess.Popen(
                [sys.executable, "-m", "mailroom", "replay"],
                cwd=ROOT,
                env={**os.environ, **sink_env(sink, spool.directory)},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    for run in runs:
        out, err = run.communicate(timeout=60)
        assert run.returncode == 0, out + err
    assert set(sink.objects) == {obj.key for obj in objects}
    assert sink.stats.overwrites == 0
    assert sink.stats.puts == 200 and sink.stats.precondition_failed == 200  # each loser: 412


def test_a_lying_endpoint_is_detected_and_nothing_counts_as_landed(
    sink: S3Sink, tmp_path: Path
) -> None:
    store = sink_store(sink)
    sink.lie(1.0)  # 200, no ETag, nothing stored
    try:
        store.put(S3Object("payloads/lie.json", b"{}"))
        raise AssertionError("a 200 without an ETag was taken for a stored object")
    except StoreError as error:
        assert error.retryable and "without an ETag" in str(error)
    env = sink_env(sink, tmp_path / "spool", ACK_MODE="stored", STORED_ACK_TIMEOUT="2")
    service = ServiceProcess(env).start()
    try:
        answer = post(service.url, [{"n": 1}, {"n": 2}])
        assert answer.status_code == 503 and answer.json()["stored"] == 0
        sink.reset_faults()  # the endpoint behaves again: the retries land them
        wait_for(lambda: sink.payload_count() == 2, timeout=20)
    finally:
        code, log = service.stop()
    assert code == 0, log
    assert sink.stats.lies >= 2


def test_a_poison_payload_is_dead_lettered_in_s3_with_why(sink: S3Sink, tmp_path: Path) -> None:
    store = sink_store(sink)
    spool = DeadLetterSpool(tmp_path / "spool", sink_destination(sink))
    policy = RestartPolicy(backoff_base=0.01)
    system = ActorSystem(store, spool, workers=1, max_queue=10, restart_policy=policy)
    system.start()
    try:
        poison = Collection("poison", "1", 1_795_000_000.0, ({"bad": {1, 2}},), tenant="acme")
        fine = Collection("fine", "1", 1_795_000_000.0, ({"good": True},))
        assert system.dispatcher().admit(poison) == 1
        assert system.dispatcher().admit(fine) == 1
        wait_for(lambda: system.ledger.snapshot().outstanding == 0, timeout=20)
    finally:
        system.drain(5)
    errors = [k for k in sink.objects if k.startswith("errors/")]
    assert len(errors) == 1 and errors[0].startswith("errors/tenant=acme/dt=")
    envelope = orjson.loads(sink.objects[errors[0]].body)
    assert envelope["attempts"] == 3 and "poison message: crashed 3 times" in envelope["error"]
    assert "bad" in envelope["raw"]  # as received, even though JSON cannot encode it
    assert envelope["payload_id"] == "poison-0" and envelope["failed_at"].endswith("Z")
    assert spool.files() == []  # S3 took it: the local disk is not needed
    assert any(k.endswith("fine-0.json") for k in sink.objects)


def test_an_idempotency_key_reused_by_another_client_or_for_other_data_loses_nothing(
    sink: S3Sink, tmp_path: Path
) -> None:
    env = sink_env(sink, tmp_path / "spool", ACK_MODE="stored", INGEST_TOKENS="one,two")
    service = ServiceProcess(env).start()
    try:
        key = {"Idempotency-Key": "order-1"}
        a = requests.post(
            service.url + "/payloads",
            json={"version": "1", "token": "one", "data": [{"who": "a", "amount": 100}]},
            headers=key,
            timeout=15,
        )
        b = requests.post(  # another client, the same key
            service.url + "/payloads",
            json={"version": "1", "token": "two", "data": [{"who": "b", "amount": 999}]},
            headers=key,
            timeout=15,
        )
        c = requests.post(  # the first client again, the same key, other data
            service.url + "/payloads",
            json={"version": "1", "token": "one", "data": [{"who": "a", "amount": 101}]},
            headers=key,
            timeout=15,
        )
    finally:
        code, log = service.stop()
    assert code == 0, log
    assert [r.status_code for r in (a, b, c)] == [200, 200, 200]
    assert [r.json()["repeat"] for r in (a, b, c)] == [False, False, False]
    stored = [orjson.loads(o.body) for k, o in sink.objects.items() if k.startswith("payloads/")]
    assert sorted(d["amount"] for d in stored) == [
        100,
        101,
        999,
    ]  # each kept, none taken for another
