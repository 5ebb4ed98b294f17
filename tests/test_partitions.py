"""PARTITION_BY (issue 18, item 3): payload fields as key segments, made safe whatever a client
sends, every payload stored exactly once, and bounded however many values a client makes up."""

from __future__ import annotations

import gzip
import re
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import orjson
import pytest
import requests

from actors import ActorSystem
from actors import uploader as uploader_module
from actors.batching import MAX_OPEN_BATCHES, BatchLimits, OpenBatches
from bench.s3sink import S3Sink
from config import ConfigError, Settings
from store.partitions import INVALID, MISSING, Partitioner, encode_value
from store.spool import DeadLetterSpool
from tests.support import ServiceProcess, sink_destination, sink_env, sink_store, wait_for

LONG = "x" * 200
HOSTILE: list[Any] = [
    "a/b",
    "..",
    ".",
    "k=v",
    "../../etc/passwd",
    "%2F",
    "北京",
    "emoji 🚀",
    "tab\there",
    "new\nline",
    LONG,
    "",
    None,
    42,
    -7,
    21.5,
    1e100,  # (integers beyond 64 bits: the API refuses them with 400)
    True,
    {"nested": 1},
    [1, 2],
]
SEGMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=[A-Za-z0-9._%-]+")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("eu-west-1", "eu-west-1"),
        ("a/b", "a%2Fb"),
        ("k=v", "k%3Dv"),
        ("..", ".."),
        ("%2F", "%252F"),
        ("北", "%E5%8C%97"),
        (42, "42"),
        (21.5, "21.5"),
        (1e100, "1e%2B100"),
        (2**70, "1180591620717411303424"),
        (None, MISSING),
        ("", MISSING),
        (True, None),
        ({"a": 1}, None),
        ([1], None),
        ("x" * 129, None),
        ("\ud800", None),
    ],
)
def test_values_are_made_safe_for_a_key_or_refused(value: Any, expected: str | None) -> None:
    assert encode_value(value) == expected


def test_the_partitioner_names_each_field_in_order() -> None:
    partitioner = Partitioner(("device", "region"), invalid_to_errors=True)
    assert partitioner.of({"device": "d1", "region": "eu"}).segments == "device=d1/region=eu/"
    found = partitioner.of({"region": {"bad": 1}})
    assert found.segments == f"device={MISSING}/region={INVALID}/" and found.misfit
    assert not partitioner.of({"device": "a/b"}).misfit


def expected_segments(document: dict[str, Any]) -> str:
    value = encode_value(document.get("device"))
    return f"device={INVALID if value is None else value}/"


def payloads_by_key(sink: S3Sink, prefix: str) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for key, obj in sink.objects.items():
        if not key.startswith(prefix):
            continue
        body = gzip.decompress(obj.body) if key.endswith(".gz") else obj.body
        found[key] = [orjson.loads(line) for line in body.splitlines() if line.strip()]
    return found


def post_stored_and_stop(env: dict[str, str], documents: list[Any]) -> None:
    """Serve with `env` (ACK_MODE=stored), post one collection, stop: it must be answered 200
    (every payload in S3) and the service exit 0."""
    service = ServiceProcess(env).start()
    try:
        answer = requests.post(
            service.url + "/payloads",
            json={"version": "1", "token": "t", "data": documents},
            timeout=15,
        )
    finally:
        code, log = service.stop()
    assert code == 0, log
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize("batched", [False, True], ids=["single", "batched-gzip"])
def test_hostile_values_land_once_each_under_safe_keys(
    sink: S3Sink, tmp_path: Path, batched: bool
) -> None:
    extra = (
        {"BATCH_MAX_PAYLOADS": "100", "BATCH_MAX_WAIT_MS": "50", "BATCH_GZIP": "true"}
        if batched
        else {}
    )
    env = sink_env(sink, tmp_path / "spool", ACK_MODE="stored", PARTITION_BY="device", **extra)
    documents = [{"n": n, "device": value} for n, value in enumerate(HOSTILE)]
    documents.append({"n": len(HOSTILE)})  # no device at all
    post_stored_and_stop(env, documents)
    stored = payloads_by_key(sink, "payloads/")
    assert set(sink.objects) == set(stored)  # no key outside the data prefix
    seen = sorted(doc["n"] for docs in stored.values() for doc in docs)
    assert seen == list(range(len(documents)))  # each exactly once
    for key, docs in stored.items():
        segments = key.split("/")
        assert len(key.encode()) < 1024 and ".." not in segments and "." not in segments
        assert segments[1].startswith("dt=") and segments[3] == "version=1"
        assert SEGMENT.fullmatch(segments[4]), key  # one segment per field, nothing more
        assert len(segments) == 6
        for doc in docs:
            assert key.startswith("payloads/dt=") and f"/{expected_segments(doc)}" in key
            value = doc.get("device")
            if isinstance(value, str) and value and encode_value(value):
                assert unquote(segments[4].split("=", 1)[1]) == value  # readers decode it back


@pytest.mark.parametrize("batched", [False, True], ids=["single", "batched"])
def test_unusable_values_go_to_the_error_prefix_when_asked(
    sink: S3Sink, tmp_path: Path, batched: bool
) -> None:
    extra = {"BATCH_MAX_PAYLOADS": "10", "BATCH_MAX_WAIT_MS": "50"} if batched else {}
    env = sink_env(
        sink,
        tmp_path / "spool",
        ACK_MODE="stored",
        PARTITION_BY="device,region",
        PARTITION_INVALID="error",
        **extra,
    )
    documents = [
        {"device": "d1", "region": "eu"},
        {"device": "d1"},  # missing: the default partition, not an error
        {"device": ["d", 1], "region": "eu"},
        {"device": True, "region": LONG},
    ]
    post_stored_and_stop(env, documents)
    data = payloads_by_key(sink, "payloads/")
    misfits = payloads_by_key(sink, "errors/partition_invalid/")
    assert sorted(len(docs) for docs in data.values()) == [1, 1]
    assert {f"device=d1/region={MISSING}/" in key for key in data} == {True, False}
    assert sum(len(docs) for docs in misfits.values()) == 2
    assert all(f"region={INVALID}/" in k or f"device={INVALID}/" in k for k in misfits)
    assert set(sink.objects) == set(data) | set(misfits)


def test_a_flood_of_distinct_values_keeps_open_batches_and_deadlines_bounded(
    sink: S3Sink, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    most = {"open": 0}

    class Watched(OpenBatches):
        def add(self, *args: Any, **kwargs: Any) -> Any:
            result = super().add(*args, **kwargs)
            most["open"] = max(most["open"], len(self))
            return result

    monkeypatch.setattr(uploader_module, "OpenBatches", Watched)
    sink.latency = 0.0
    system = ActorSystem(
        sink_store(sink, partitioner=Partitioner(("device",))),
        DeadLetterSpool(tmp_path / "spool", sink_destination(sink)),
        workers=2,
        max_queue=1000,
        batch_limits=BatchLimits(max_payloads=1000, max_wait=5.0),
    )
    system.start()
    baseline = threading.active_count()
    threads = {"most": baseline, "alarms": 0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.01):
            threads["most"] = max(threads["most"], threading.active_count())
            threads["alarms"] = max(threads["alarms"], len(system.alarms))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    door = system.dispatcher()
    sent = 0
    deadline = time.monotonic() + 60
    try:
        for start in range(0, 4000, 100):  # 4,000 payloads, each with a device of its own
            while time.monotonic() < deadline:
                try:
                    door.submit(
                        "1", [{"device": f"d{n}", "n": n} for n in range(start, start + 100)]
                    )
                    break
                except Exception:  # mailboxes full: let the uploaders catch up
                    time.sleep(0.01)
            sent += 100
        wait_for(lambda: sink.payload_count() >= sent - 2 * MAX_OPEN_BATCHES, timeout=60)
    finally:
        system.drain(10)
        stop.set()
        sampler.join()
    assert most["open"] <= MAX_OPEN_BATCHES
    # A deadline per open batch, all on one thread (before: a thread per batch, 1,288 here).
    assert threads["alarms"] <= 2 * MAX_OPEN_BATCHES
    assert threads["most"] <= baseline + 2  # the alarms' thread and the sampler
    stored = payloads_by_key(sink, "payloads/")
    assert sorted(doc["n"] for docs in stored.values() for doc in docs) == list(range(sent))
    assert all(len({doc["device"] for doc in docs}) == 1 for docs in stored.values())


@pytest.mark.parametrize(
    "value", ["a/b", "dt", "Version", "x,x", "a,b,c,d,e", "9lives", "dev ice", "_mailroom_id", ","]
)
def test_a_partition_field_that_cannot_be_a_key_segment_stops_the_start(value: str) -> None:
    with pytest.raises(ConfigError, match=r"^PARTITION_BY=.* is not valid: expected 1 to 4"):
        Settings.from_env({"PARTITION_BY": value})


def test_partition_fields_are_read_in_order() -> None:
    settings = Settings.from_env(
        {"PARTITION_BY": " device , region_2 ", "PARTITION_INVALID": "Error"}
    )
    assert settings.partition_by == ("device", "region_2")
    assert settings.partition_invalid == "error"
