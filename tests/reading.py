"""Reading the bucket back as its consumer would: a local mirror of the data prefix, and the
DuckDB queries of docs/consumers.md, so the test runs exactly what the doc tells readers to run.

Why a mirror and not `s3://`: DuckDB reads S3 through its httpfs extension, which `INSTALL
httpfs` downloads at run time from extensions.duckdb.org, and this machine (like CI) reaches
package registries only; PyPI's `duckdb-extension-httpfs` stops at 1.5.5, and an extension
loads only into the DuckDB release it was built for (2.x here). The S3 stand-in
(bench/s3sink.py) serves PUT only, so the copy is taken from the objects it holds, every key
under the prefix, byte for byte: whatever sits there that is not a payload breaks the read here
as it would on S3.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import duckdb

from tests.support import ROOT

DOC = ROOT / "docs" / "consumers.md"
# The bucket every tested query in the doc names; the test puts the mirror's path in its place.
DOC_BUCKET = "s3://my-bucket/"
_SQL_BLOCK = re.compile(r"```sql\n(.*?)```", re.DOTALL)
_TESTED = re.compile(r"\A-- tested: ([a-z_]+)\n")


def mirror(objects: Mapping[str, bytes], prefix: str, root: Path) -> Path:
    """Write every object whose key starts with `prefix` to `root/<key>`; return `root`.

    Keys become paths unchanged (S3 keys here are relative and free of `..`, as store/keys.py
    makes them), so DuckDB's globs and hive partitions see what they would see in the bucket.
    """
    for key, body in objects.items():
        if key.startswith(prefix):
            path = root / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(body)
    return root


def doc_readers(text: str | None = None) -> dict[str, list[str]]:
    """The doc's ```sql blocks whose first line is `-- tested: <reader>`, by reader, in order."""
    blocks: dict[str, list[str]] = {}
    for block in _SQL_BLOCK.findall(DOC.read_text() if text is None else text):
        tag = _TESTED.match(block)
        if tag:
            blocks.setdefault(tag.group(1), []).append(block)
    return blocks


def run_reader(con: duckdb.DuckDBPyConnection, reader: str, bucket: Path) -> None:
    """Run the doc's blocks for `reader` against a mirrored bucket, in the doc's order."""
    blocks = doc_readers().get(reader)
    assert blocks, f"docs/consumers.md has no ```sql block tagged `-- tested: {reader}`"
    for block in blocks:
        con.execute(block.replace(DOC_BUCKET, f"{bucket}/"))
