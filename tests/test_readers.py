"""What a map-reduce job reads (issue 18): every accepted payload exactly once, in typed hive
partitions, read by DuckDB with the very queries of docs/consumers.md.

Each mode of MODES starts the real service (`mailroom serve`) on a loopback port, uploading to
the S3 stand-in (bench/s3sink.py); posts its payloads over a real socket, each carrying a
unique `uid`; waits until the service holds nothing (`/healthz` `held` is 0); stops it; copies
everything under the data prefix into a directory, key for key and byte for byte; and runs the
doc's `-- tested: <reader>` blocks against that copy, as a data engineer would against the
bucket. DuckDB reads a copy, not `s3://`, because its httpfs extension cannot be installed
here (it is downloaded from extensions.duckdb.org at run time; this machine and CI reach
package registries only, and PyPI's build of it does not match DuckDB 2.x): tests/reading.py.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest
import requests

from bench.s3sink import S3Sink
from tests.reading import doc_readers, mirror, run_reader
from tests.support import ServiceProcess, replay_spool, sink_env, wait_for

PREFIX = "payloads/"  # S3_PREFIX's default, which sink_env keeps
TENANT_TOKENS = {"acme": "k1", "beta": "k2"}


@dataclass(frozen=True)
class Posted:
    """One payload the service accepted, and where a reader should find it."""

    uid: str
    version: str
    tenant: str | None
    document: dict[str, Any]


class Client:
    """Posts collections as an endpoint would, and remembers every payload accepted."""

    def __init__(self, url: str, mode: str) -> None:
        self.url = url
        self.mode = mode
        self.posted: list[Posted] = []
        self.http = requests.Session()
        self._next = 0

    def payloads(self, count: int, **fields: Any) -> list[dict[str, Any]]:
        """`count` new payloads, each with a uid no other payload of the run has."""
        start, self._next = self._next, self._next + count
        return [
            {"uid": f"{self.mode}-{n}", "n": n, "temp": 20.0 + n / 4, **fields}
            for n in range(start, start + count)
        ]

    def post(
        self,
        data: list[dict[str, Any]],
        *,
        version: str = "1.0",
        tenant: str | None = None,
        key: str | None = None,
    ) -> None:
        token = TENANT_TOKENS[tenant] if tenant else "t"
        headers = {"Idempotency-Key": key} if key else {}
        body = {"version": version, "token": token, "data": data}
        answer = self.http.post(self.url + "/payloads", json=body, headers=headers, timeout=10)
        assert answer.status_code == 202, answer.text
        self.posted += [Posted(d["uid"], version, tenant, d) for d in data]


# -- how each mode sends ---------------------------------------------------------------------


def send_plain(client: Client) -> None:
    """Three collections, two versions."""
    client.post(client.payloads(4))
    client.post(client.payloads(4))
    client.post(client.payloads(4), version="2")


def send_as_tenants(client: Client) -> None:
    for tenant in TENANT_TOKENS:
        client.post(client.payloads(4), tenant=tenant)
        client.post(client.payloads(2), tenant=tenant, version="2")


def send_twice_with_keys(client: Client) -> None:
    """Each tenant's collection sent twice with its Idempotency-Key (the first answer lost),
    and one collection without a key beside it, as clients mix them."""
    for tenant in TENANT_TOKENS:
        data = client.payloads(3)
        client.post(data, tenant=tenant, key=f"order-{tenant}-1")
        client.post(data, tenant=tenant, key=f"order-{tenant}-1")
        client.post(client.payloads(2), tenant=tenant)


def send_twice_with_a_key(client: Client) -> None:
    data = client.payloads(4)
    client.post(data, key="order-1")
    client.post(data, key="order-1")
    client.post(client.payloads(3))


def send_with_fields(client: Client) -> None:
    for device, region in (("d1", "eu"), ("d2", "eu"), ("d1", "us")):
        client.post(client.payloads(3, device=device, region=region))


# -- the scenario table ----------------------------------------------------------------------


@dataclass(frozen=True)
class Mode:
    """A way of running the service and sending to it, and what a reader of it expects."""

    name: str
    env: Mapping[str, str]  # the service's settings, beside sink_env's
    send: Callable[[Client], None]
    reader: str = "json"  # the docs/consumers.md blocks that read it
    suffix: str = ".json"  # how every object's key ends
    tenants: bool = False  # a `tenant` partition column, each payload its sender's tenant
    partition_by: tuple[str, ...] = ()  # payload fields that are partitions too
    repeats: bool = False  # resends land twice; the reader's `lines` view holds every copy
    id_column: str | None = None  # a column holding each payload's id, one per payload
    outage: bool = False  # S3 down while posting: all spooled, then `mailroom replay`


BATCHED = {"BATCH_MAX_PAYLOADS": "50", "BATCH_MAX_WAIT_MS": "100"}
TENANTS = {"INGEST_TOKENS": ",".join(f"{t}:{k}" for t, k in TENANT_TOKENS.items())}

SINGLE = Mode("single", {}, send_plain)
START_CHECK = Mode("start_check", {"S3_CHECK": "warn"}, send_plain)
MODES = [
    SINGLE,
    Mode("batched", BATCHED, send_plain, suffix=".ndjson"),
    Mode("gzip", {**BATCHED, "BATCH_GZIP": "true"}, send_plain, suffix=".ndjson.gz"),
    Mode(
        "parquet",
        {**BATCHED, "BATCH_FORMAT": "parquet"},
        send_plain,
        reader="parquet",
        suffix=".parquet",
        id_column="_mailroom_id",
    ),
    Mode("tenants", TENANTS, send_as_tenants, tenants=True),
    Mode(
        "idempotency_key",
        TENANTS,
        send_twice_with_keys,
        tenants=True,
    ),
    Mode(
        "line_ids",
        {**BATCHED, "BATCH_LINE_IDS": "true"},
        send_twice_with_a_key,
        reader="line_ids",
        suffix=".ndjson",
        repeats=True,
        id_column="id",
    ),
    Mode("replayed", {"UPLOAD_RETRY_SECONDS": "0.2"}, send_plain, outage=True),
    Mode(
        "partition_by",
        {**BATCHED, "PARTITION_BY": "device,region"},
        send_with_fields,
        suffix=".ndjson",
        partition_by=("device", "region"),
    ),
    START_CHECK,
]


# -- running a mode --------------------------------------------------------------------------


@dataclass(frozen=True)
class Landing:
    """What one run of the service left under the data prefix, and what it had accepted."""

    bucket: Path  # the mirror: `bucket/payloads/...`, one file per object
    keys: list[str]
    posted: list[Posted]
    accepted: tuple[float, float]  # the wall-clock span in which the posts were answered


def holds_nothing(url: str) -> bool:
    """The ledger is empty: every payload accepted is in S3 or in the spool."""
    return requests.get(url + "/healthz", timeout=5).json()["held"] == 0


def replay(env: dict[str, str], payloads: int) -> None:
    printed = replay_spool(env)
    assert f"holding {payloads} payload(s) landed" in printed, printed


def land(mode: Mode, workdir: Path) -> Landing:
    """Run the service in `mode` against a fresh stand-in; mirror what it wrote."""
    sink = S3Sink(latency_ms=2).serve_in_thread()
    try:
        env = sink_env(sink, workdir / "spool", **mode.env)
        service = ServiceProcess(env).start()
        try:
            if mode.outage:
                sink.go_down_for(60)  # reset below, once everything is spooled
            client = Client(service.url, mode.name)
            started = time.time()
            mode.send(client)
            finished = time.time()
            client.http.close()
            wait_for(lambda: holds_nothing(service.url), timeout=30, interval=0.2)
        finally:
            code, log = service.stop()
        assert code == 0, log
        if mode.outage:
            assert not [k for k in sink.objects if k.startswith(PREFIX)], "S3 was down"
            sink.reset_faults()
            replay(env, len(client.posted))
        objects = {key: stored.body for key, stored in sink.objects.items()}
    finally:
        sink.stop()
    bucket = mirror(objects, PREFIX, workdir / "bucket")
    keys = sorted(key for key in objects if key.startswith(PREFIX))
    return Landing(bucket, keys, client.posted, (started, finished))


@pytest.fixture(scope="module")
def landings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[Mode], Landing]]:
    """Each mode's run, done once for the module however many tests read it."""
    done: dict[str, Landing] = {}

    def get(mode: Mode) -> Landing:
        if mode.name not in done:
            done[mode.name] = land(mode, tmp_path_factory.mktemp(mode.name))
        return done[mode.name]

    yield get


def hour_of(moment: float) -> tuple[date, int]:
    at = datetime.fromtimestamp(moment, UTC)
    return at.date(), at.hour


def expect_once(posted: list[Posted]) -> Counter[str]:
    return Counter({p.uid: 1 for p in posted})


# -- the tests -------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [pytest.param(m, id=m.name) for m in MODES])
def test_a_reader_finds_every_accepted_payload_once_in_typed_partitions(
    mode: Mode, landings: Callable[[Mode], Landing]
) -> None:
    landing = landings(mode)
    con = duckdb.connect()
    run_reader(con, mode.reader, landing.bucket)

    columns = dict(
        con.execute("SELECT column_name, column_type FROM (DESCRIBE payloads)").fetchall()
    )
    assert (columns["dt"], columns["hour"], columns["version"]) == ("DATE", "INTEGER", "VARCHAR")
    assert columns.get("tenant") == ("VARCHAR" if mode.tenants else None), columns
    wanted = ["uid", "dt", "hour", "version", "filename", *mode.partition_by]
    wanted += ["tenant"] if mode.tenants else []
    rows = [
        dict(zip(wanted, row, strict=True))
        for row in con.execute(f"SELECT {', '.join(wanted)} FROM payloads").fetchall()
    ]

    assert Counter(row["uid"] for row in rows) == expect_once(landing.posted)
    sent = {p.uid: p for p in landing.posted}
    hours = {hour_of(landing.accepted[0]), hour_of(landing.accepted[1])}
    for row in rows:
        payload = sent[row["uid"]]
        assert (row["dt"], row["hour"]) in hours, row  # the hour it was accepted
        assert row["version"] == payload.version
        assert row.get("tenant") == payload.tenant
        assert row["filename"].endswith(mode.suffix), row
        for name in mode.partition_by:  # a partition of the key, not only a payload field
            assert f"/{name}={payload.document[name]}/" in row["filename"], row
            assert row[name] == payload.document[name]
    # Every object under the prefix is one of this mode's: nothing but payloads.
    objects = landing.keys  # nothing but payloads under the prefix
    assert all(key.endswith(mode.suffix) for key in objects), objects
    if mode.id_column:
        ids, distinct = con.execute(
            f"SELECT count({mode.id_column}), count(DISTINCT {mode.id_column}) FROM payloads"
        ).fetchone()
        assert ids == distinct == len(rows)
    if mode.repeats:  # every copy is there to be dropped: the reader's dedupe is what is tested
        lines = Counter(uid for (uid,) in con.execute("SELECT payload.uid FROM lines").fetchall())
        assert lines == Counter(p.uid for p in landing.posted)
        assert lines != expect_once(landing.posted)


def test_a_reader_of_the_data_prefix_reads_only_payloads(
    landings: Callable[[Mode], Landing],
) -> None:
    """The issue's first bug, gone: `read_json_auto('payloads/**/*')` stopped at the probe
    object the start check (S3_CHECK=warn, the default) left under the prefix; it writes under
    S3_STATE_PREFIX now."""
    landing = landings(START_CHECK)
    con = duckdb.connect()
    run_reader(con, "json", landing.bucket)  # the whole prefix: payloads/**/*
    uids = Counter(uid for (uid,) in con.execute("SELECT uid FROM payloads").fetchall())
    assert uids == expect_once(landing.posted)
    assert all(key.endswith(".json") and "/dt=" in key for key in landing.keys), landing.keys


def test_without_hive_types_duckdb_guesses_partition_types_from_the_values(
    landings: Callable[[Mode], Landing],
) -> None:
    """Why the doc names the partitions' types: DuckDB's guesses depend on the values read."""
    landing = landings(SINGLE)
    con = duckdb.connect()

    def guessed(glob: str) -> dict[str, str]:
        source = f"read_json_auto('{landing.bucket}/{PREFIX}{glob}', hive_partitioning = true)"
        return dict(
            con.execute(
                f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM {source})"
            ).fetchall()
        )

    types = guessed("*=*/**/*")
    hours = {key.split("/hour=")[1][:2] for key in landing.keys}
    assert types["dt"] == "DATE"
    assert types["hour"] == ("VARCHAR" if any(h.startswith("0") for h in hours) else "BIGINT")
    assert types["version"] == "VARCHAR"  # "1.0" beside "2"
    assert guessed("*=*/**/version=2/*")["version"] == "BIGINT"  # "2" alone: a number


def test_every_tested_block_of_the_doc_is_run() -> None:
    """A `-- tested:` block no test runs would be a doc that can drift unnoticed."""
    readers = {mode.reader for mode in MODES}
    assert set(doc_readers()) == readers
