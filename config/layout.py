"""What the bucket's layout settings must satisfy, checked at start so a bad one is one line.

The data prefix (`S3_PREFIX`) must hold payloads and nothing else, since a query engine reads
every object under it as one: dead letters (`S3_ERROR_PREFIX`) and the service's own objects
(`S3_STATE_PREFIX`: idempotency markers, the start check's probe) must lie outside it, and
outside each other. `PARTITION_BY` names become key segments `name=value/`, so they are held
to what every engine reads as a column name. Parquet needs pyarrow, installed only with the
`parquet` extra: asked for without it, the start fails rather than the first batch.
"""

from __future__ import annotations

import re
from itertools import combinations

from config.reader import ConfigError

PARTITION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
# Columns the key already has (or Parquet adds): a field of that name would shadow them.
RESERVED_NAMES = frozenset({"tenant", "dt", "hour", "version", "_mailroom_id"})
MAX_PARTITION_FIELDS = 4  # each adds up to ~190 characters to a key (S3 allows 1,024 bytes)


def parse_partition_by(raw: str) -> tuple[str, ...]:
    """`device,region` -> ("device", "region"); ValueError for a name that cannot be a column."""
    names = tuple(name.strip() for name in raw.split(","))
    if not 1 <= len(names) <= MAX_PARTITION_FIELDS or len(set(names)) != len(names):
        raise ValueError
    for name in names:
        if not PARTITION_NAME.fullmatch(name) or name.lower() in RESERVED_NAMES:
            raise ValueError
    return names


PARTITION_BY_FORM = (
    f"1 to {MAX_PARTITION_FIELDS} distinct top-level field names, comma-separated, each "
    "a letter or _ then letters, digits or _ (at most 64), none of "
    + ", ".join(sorted(RESERVED_NAMES))
)


def check_prefixes(data: str, error: str, state: str) -> None:
    """Refuse prefixes that overlap: whatever lies under S3_PREFIX must be a payload."""
    named = {"S3_PREFIX": data, "S3_ERROR_PREFIX": error, "S3_STATE_PREFIX": state}
    for (name, prefix), (other, other_prefix) in combinations(named.items(), 2):
        if prefix.startswith(other_prefix) or other_prefix.startswith(prefix):
            raise ConfigError(
                f"{other}={other_prefix!r} is not valid: it overlaps {name}={prefix!r}; "
                "S3_PREFIX, S3_ERROR_PREFIX and S3_STATE_PREFIX must each lie outside "
                "the others, so that the data prefix holds payloads only"
            )


def check_batch_format(batch_format: str, batch_max_payloads: int, batch_gzip: bool) -> None:
    """Parquet applies to batches, compresses itself, and needs pyarrow."""
    if batch_format != "parquet":
        return
    if batch_max_payloads <= 1:
        raise ConfigError(
            "BATCH_FORMAT=parquet needs batched mode: set BATCH_MAX_PAYLOADS above 1 "
            "(one object per payload is always that payload's JSON)"
        )
    if batch_gzip:
        raise ConfigError(
            "BATCH_GZIP=true does not apply to BATCH_FORMAT=parquet (Parquet objects are "
            "compressed inside, with zstd): unset BATCH_GZIP"
        )
    try:
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise ConfigError(
            "BATCH_FORMAT=parquet needs pyarrow, which is not installed: "
            "pip install 'mailroom[parquet]' (or pyarrow>=15)"
        ) from None
