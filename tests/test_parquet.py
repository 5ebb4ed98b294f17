"""Parquet batches (issue 18, item 4): one table per batch, one row per payload with its id,
read back by pyarrow as a consumer would; refused at start, in one line, without pyarrow."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests

from bench.s3sink import S3Sink
from config import ConfigError, Settings
from store.parquet import ID_COLUMN, encode_table
from tests.support import ROOT, ServiceProcess, sink_env


def table_of(body: bytes) -> pa.Table:
    return pq.read_table(io.BytesIO(body))


def test_columns_are_typed_from_the_batch_and_mixed_ones_are_json_text() -> None:
    documents = [
        {"temp": 21, "on": True, "name": "a", "tags": ["x"], "mixed": 1, "_mailroom_id": "mine"},
        {"temp": 21.5, "on": False, "name": None, "tags": {"k": 1}, "mixed": "1"},
        {"late": 7},
    ]
    table = table_of(encode_table(documents, ["c-0", "c-1", "c-2"]))
    assert table.column_names == [
        ID_COLUMN,
        "temp",
        "on",
        "name",
        "tags",
        "mixed",
        "_mailroom_id_",  # the payload's own field of that name, kept
        "late",
    ]
    schema = {field.name: field.type for field in table.schema}
    assert schema["temp"] == pa.float64() and schema["on"] == pa.bool_()
    assert schema["late"] == pa.int64() and schema["name"] == pa.string()
    rows = table.to_pylist()
    assert [row[ID_COLUMN] for row in rows] == ["c-0", "c-1", "c-2"]
    assert [row["mixed"] for row in rows] == ["1", '"1"', None]  # JSON text, strings quoted
    assert [orjson.loads(row["tags"]) for row in rows[:2]] == [["x"], {"k": 1}]
    assert rows[0]["_mailroom_id_"] == "mine" and rows[2]["late"] == 7


def test_every_payload_is_read_back_once_with_its_id(sink: S3Sink, tmp_path: Path) -> None:
    env = sink_env(
        sink,
        tmp_path / "spool",
        ACK_MODE="stored",
        BATCH_FORMAT="parquet",
        BATCH_MAX_PAYLOADS="7",
        BATCH_MAX_WAIT_MS="50",
        PARTITION_BY="site",
    )
    sent = [
        [{"n": c * 10 + i, "site": f"s{i % 2}", "v": i / 2} for i in range(5)] for c in range(4)
    ]
    service = ServiceProcess(env).start()
    try:
        answers = [
            requests.post(
                service.url + "/payloads",
                json={"version": "1", "token": "t", "data": data},
                headers={"Idempotency-Key": f"k{c}"} if c % 2 else {},
                timeout=15,
            )
            for c, data in enumerate(sent)
        ]
    finally:
        code, log = service.stop()
    assert code == 0, log
    assert [a.status_code for a in answers] == [200] * 4, [a.text for a in answers]
    rows: dict[int, dict] = {}
    for key, obj in sink.objects.items():
        assert key.startswith("payloads/dt=") and key.endswith(".parquet"), key
        assert obj.body[:4] == b"PAR1" and "/site=s" in key
        for row in table_of(obj.body).to_pylist():
            assert row["n"] not in rows and f"/site={row['site']}/" in key
            rows[row["n"]] = {**row, "key": key}
    assert sorted(rows) == sorted(doc["n"] for data in sent for doc in data)
    for answer, data in zip(answers, sent, strict=True):  # receipts: key and row of each
        for receipt, doc in zip(answer.json()["receipts"], data, strict=True):
            row = table_of(sink.objects[receipt["key"]].body).to_pylist()[receipt["line"] - 1]
            assert row["n"] == doc["n"] and row["v"] == doc["v"]
    ids = [row[ID_COLUMN] for row in rows.values()]
    assert len(set(ids)) == len(ids) == 20
    keyed = [rows[c * 10 + i][ID_COLUMN] for c in (1, 3) for i in range(5)]
    assert all(len(i.split("-")) == 3 and i.split("-")[1].isdigit() for i in keyed)  # key ids


def test_parquet_without_pyarrow_stops_the_start_with_one_line(tmp_path: Path) -> None:
    stub = tmp_path / "stub" / "pyarrow"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("raise ImportError('No module named pyarrow')\n")
    done = subprocess.run(
        [sys.executable, "-m", "mailroom", "serve"],
        cwd=ROOT,
        env={
            **os.environ,
            "PYTHONPATH": str(tmp_path / "stub"),
            "SPOOL_DIR": str(tmp_path / "spool"),
            "BATCH_FORMAT": "parquet",
            "BATCH_MAX_PAYLOADS": "100",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines == [
        "mailroom: configuration error: BATCH_FORMAT=parquet needs pyarrow, which is not "
        "installed: pip install 'mailroom[parquet]' (or pyarrow>=15)"
    ]


def test_parquet_is_refused_where_it_cannot_apply() -> None:
    with pytest.raises(ConfigError, match="needs batched mode"):
        Settings.from_env({"BATCH_FORMAT": "parquet"})
    with pytest.raises(ConfigError, match="BATCH_GZIP=true does not apply"):
        Settings.from_env(
            {"BATCH_FORMAT": "parquet", "BATCH_MAX_PAYLOADS": "10", "BATCH_GZIP": "true"}
        )
    with pytest.raises(ConfigError, match="BATCH_FORMAT='csv' is not valid"):
        Settings.from_env({"BATCH_FORMAT": "csv"})
