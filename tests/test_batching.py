"""Batched mode: many payloads per object, flushed by count, bytes or age; a batch is a unit."""

from __future__ import annotations

import gzip
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest

from actors import ActorSystem, Collection
from actors.batching import BatchLimits
from actors.retry import RestartPolicy
from store import S3Object, S3Store
from store.spool import DeadLetterSpool
from tests.support import ANYWHERE, RecordingStore, collection, wait_for


def payloads(n: int, version: str = "1", **extra: Any) -> list[Collection]:
    """One collection of n payloads (in a list, so that lists of them add up)."""
    return [collection(*({"n": i, **extra} for i in range(n)), version=version)]


def start(store: Any, tmp_path: Path, limits: BatchLimits, workers: int = 1) -> ActorSystem:
    policy = RestartPolicy(backoff_base=0.01)
    system = ActorSystem(
        store,
        DeadLetterSpool(tmp_path / "spool", ANYWHERE),
        workers=workers,
        max_queue=1000,
        batch_limits=limits,
        restart_policy=policy,
    )
    system.start()
    return system


def route(system: ActorSystem, collections: list[Collection]) -> int:
    return sum(system.dispatcher().admit(each) for each in collections)


def stored_docs(store: RecordingStore) -> list[dict]:
    return [doc for docs in store.saved.values() for doc in docs]


def test_full_batches_are_written_at_once_and_the_rest_when_it_has_waited(tmp_path) -> None:
    store = RecordingStore()
    system = start(store, tmp_path, BatchLimits(max_payloads=5, max_wait=0.3))
    sent = payloads(12)
    assert route(system, sent) == 12
    wait_for(lambda: len(store.saved) == 2, timeout=5)
    sizes = sorted(len(docs) for docs in store.saved.values())
    assert sizes == [5, 5]  # the partial batch of 2 waits for its age limit
    wait_for(lambda: len(store.saved) == 3, timeout=5)
    assert sorted(len(docs) for docs in store.saved.values()) == [2, 5, 5]
    assert sorted(d["n"] for d in stored_docs(store)) == list(range(12))


def test_a_batch_is_flushed_when_it_reaches_its_byte_limit(tmp_path) -> None:
    store = RecordingStore()
    system = start(store, tmp_path, BatchLimits(max_payloads=1000, max_bytes=2000, max_wait=60))
    sent = payloads(10, pad="x" * 480)  # ~500 bytes a line: 4 fit under 2000
    assert route(system, sent) == 10
    wait_for(lambda: len(store.saved) == 2, timeout=5)
    assert sorted(len(docs) for docs in store.saved.values()) == [4, 4]
    system.drain(timeout=5)
    assert sorted(len(docs) for docs in store.saved.values()) == [2, 4, 4]


def test_each_version_gets_its_own_batches(tmp_path) -> None:
    store = RecordingStore()
    system = start(store, tmp_path, BatchLimits(max_payloads=3, max_wait=60))
    assert route(system, payloads(3, "a") + payloads(3, "b")) == 6
    wait_for(lambda: len(store.saved) == 2, timeout=5)
    versions = {key.split("/")[0] for key in store.saved}
    assert versions == {"a", "b"}


def test_shutdown_flushes_partial_batches(tmp_path) -> None:
    store = RecordingStore()
    system = start(store, tmp_path, BatchLimits(max_payloads=100, max_wait=60), workers=2)
    first, second = payloads(4), payloads(3)
    assert route(system, first) == 4
    assert route(system, second) == 3  # round robin: the other uploader
    assert system.drain(timeout=5) == 0
    assert sorted(len(docs) for docs in store.saved.values()) == [3, 4]
    assert sorted(d["n"] for d in stored_docs(store)) == [0, 0, 1, 1, 2, 2, 3]
    assert DeadLetterSpool(tmp_path / "spool", ANYWHERE).files() == []  # uploaded, not swept


class CrashOnceStore(RecordingStore):
    """Encoding a batch holding {"crash": true} raises the first time, as a bug would."""

    def __init__(self) -> None:
        super().__init__()
        self.attempts: dict[str, int] = {}
        self.lock = threading.Lock()

    def batch_object(self, lines: list[bytes], **kw: Any) -> S3Object:
        obj = super().batch_object(lines, **kw)
        with self.lock:
            self.attempts[obj.key] = self.attempts.get(obj.key, 0) + 1
            first = self.attempts[obj.key] == 1
        if first and b'"crash":true' in obj.body:
            raise RuntimeError("injected bug")
        return obj


def test_a_crash_redoes_the_batch_whole_and_it_keeps_its_key(tmp_path) -> None:
    store = CrashOnceStore()
    system = start(store, tmp_path, BatchLimits(max_payloads=4, max_wait=60))
    sent = payloads(3) + payloads(1, crash=True) + payloads(2)
    assert route(system, sent) == 6
    wait_for(lambda: len(store.saved) == 1, timeout=5)
    [(key, docs)] = store.saved.items()
    assert store.attempts[key] == 2  # crashed once, then the same key landed
    assert len(docs) == 4
    system.drain(timeout=5)  # the open batch of 2 is flushed at shutdown
    assert sorted(len(d) for d in store.saved.values()) == [2, 4]
    assert DeadLetterSpool(tmp_path / "spool", ANYWHERE).files() == []


def test_s3_batch_objects_are_ndjson_and_gzip_when_asked() -> None:
    store = S3Store(client=None, bucket="b", prefix="p/")
    lines = [store.encode({"n": i}) for i in range(3)]
    plain = store.batch_object(lines, version="1", received_at=0, unique="u", gzipped=False)
    packed = store.batch_object(lines, version="1", received_at=0, unique="u", gzipped=True)
    assert plain.key.endswith("-u.ndjson")
    assert packed.key.endswith("-u.ndjson.gz")
    assert plain.payloads == packed.payloads == 3
    assert gzip.decompress(packed.body) == plain.body
    assert [orjson.loads(line) for line in plain.body.splitlines()] == [{"n": i} for i in range(3)]


@pytest.mark.parametrize("value", ["true", "1", "yes"])
def test_batch_gzip_setting_reads_booleans(value: str) -> None:
    from config import Settings

    assert Settings.from_env({"BATCH_GZIP": value}).batch_gzip is True


def test_in_batched_mode_a_collection_goes_whole_to_one_mailbox(tmp_path) -> None:
    store = RecordingStore()
    system = start(store, tmp_path, BatchLimits(max_payloads=100, max_wait=60), workers=3)
    for _ in range(3):
        assert route(system, payloads(5)) == 5
    system.drain(timeout=5)
    assert sorted(len(docs) for docs in store.saved.values()) == [5, 5, 5]


def test_a_collection_bigger_than_any_one_mailbox_is_spread(tmp_path) -> None:
    store = RecordingStore()
    limits = BatchLimits(max_payloads=100, max_wait=60)
    system = ActorSystem(
        store,
        DeadLetterSpool(tmp_path / "spool", ANYWHERE),
        workers=3,
        max_queue=4,
        batch_limits=limits,
    )
    system.start()
    assert route(system, payloads(10)) == 10  # 4 + 3 + 3
    system.drain(timeout=5)
    assert sorted(len(docs) for docs in store.saved.values()) == [3, 3, 4]


def test_with_line_ids_a_resent_collection_can_be_deduplicated_by_readers(tmp_path) -> None:
    """Batched mode cannot make a resend land on the same key; its lines carry the payload's
    id instead (from the Idempotency-Key), the same in both objects."""
    store = RecordingStore()
    system = start(store, tmp_path, BatchLimits(max_payloads=100, max_wait=0.1, line_ids=True))
    door = system.dispatcher()
    documents = [{"n": 0}, {"n": 1}]
    assert door.submit("1", documents, idempotency_key="order-1") == 2
    wait_for(lambda: len(stored_docs(store)) == 2, timeout=5)
    assert door.submit("1", documents, idempotency_key="order-1") == 2  # its answer was lost
    assert door.submit("1", [{"n": 2}]) == 1  # no key: an id of its own all the same
    wait_for(lambda: len(stored_docs(store)) == 5, timeout=5)
    lines = stored_docs(store)
    assert all(set(line) == {"id", "payload"} for line in lines)
    unique = {line["id"]: line["payload"] for line in lines}  # what a reader keeps
    assert sorted(p["n"] for p in unique.values()) == [0, 1, 2]
    assert len(store.saved) >= 2  # the resend went into another object
