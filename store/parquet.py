"""A batch as one Parquet table (BATCH_FORMAT=parquet): one row per payload, built from the
documents themselves (never by parsing NDJSON back), compressed with zstd.

Columns: `_mailroom_id` first (the payload's id, the one BATCH_LINE_IDS writes in NDJSON
lines), then each top-level field in the order first met in the batch. A field's column is
typed from its values in this batch, nulls and absences aside:

- all booleans: boolean; all strings: string;
- all integers within 64 bits: int64; integers and floats (numbers, as JSON has one kind):
  double, unless an integer needs more than a double's 53 bits;
- objects and arrays, and any other mix of types: JSON text (a string column in which every
  value, strings included, is JSON: `"a"`, `21.5`, `{"b":1}`), so a column's type never
  depends on how nested a value is, and the schema stays flat for every engine;
- never a value (only nulls): string, all null.

So one field may be int64 in one object and JSON text in another: read a prefix with
`union_by_name` (DuckDB) or `mergeSchema` (Spark). zstd (level 1, pyarrow's default) is read
by DuckDB, Spark, Athena and Trino alike, and `make bench` measures it against gzip NDJSON.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

ID_COLUMN = "_mailroom_id"
VALUE_COLUMN = "_mailroom_value"  # a payload that is not an object (the API refuses those)
COMPRESSION = "zstd"
_INT64 = (-(2**63), 2**63 - 1)
_EXACT_IN_DOUBLE = 2**53


def encode_table(documents: Sequence[Any], ids: Sequence[str]) -> bytes:
    """The Parquet file of these payloads, one row each, with their ids."""
    columns: dict[str, list[Any]] = {}
    for row, document in enumerate(documents):
        fields = document if isinstance(document, dict) else {VALUE_COLUMN: document}
        for name, value in fields.items():
            column = columns.get(name)
            if column is None:
                column = columns[name] = []
            if len(column) < row:
                column.extend([None] * (row - len(column)))
            column.append(value)
    count = len(documents)
    names = [ID_COLUMN]
    arrays = [pa.array(list(ids), type=pa.string())]
    for name, values in columns.items():
        values.extend([None] * (count - len(values)))
        while name in names:  # a payload's own `_mailroom_id` field is kept, renamed
            name += "_"
        names.append(name)
        arrays.append(_array(values))
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_arrays(arrays, names=names), sink, compression=COMPRESSION)
    return sink.getvalue().to_pybytes()


def _array(values: list[Any]) -> pa.Array:
    kinds = {type(value) for value in values if value is not None}
    if not kinds or kinds == {str}:
        return pa.array(values, type=pa.string())
    if kinds == {bool}:
        return pa.array(values, type=pa.bool_())
    if kinds == {int} and all(_INT64[0] <= v <= _INT64[1] for v in values if v is not None):
        return pa.array(values, type=pa.int64())
    if kinds <= {int, float} and all(
        abs(v) <= _EXACT_IN_DOUBLE for v in values if isinstance(v, int)
    ):
        return pa.array([None if v is None else float(v) for v in values], type=pa.float64())
    return pa.array(
        [None if v is None else orjson.dumps(v, default=repr).decode() for v in values],
        type=pa.string(),
    )
