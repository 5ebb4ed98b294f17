"""Partitions from payload fields (PARTITION_BY), as Firehose's dynamic partitioning makes them.

Each named top-level field of a payload becomes a key segment `name=value/`, after
`version=`: time first, so a reader (or Athena's partition projection) prunes by `dt` and
`hour` before anything else, then the fields, in the order named.

A value is made safe for a key, and read back as itself by Hive, Spark and DuckDB
(`hive_partitioning`), which decode `%XX`:

- a string of 1 or more characters, or a number (an integer, or a float as JSON writes it:
  `21.5`, `1e+100` becomes `1e%2B100`), is kept; every character outside `A-Z a-z 0-9 . _ -`
  is written as `%XX`, the bytes of its UTF-8 form (`a/b` -> `a%2Fb`, `=` -> `%3D`,
  `%` -> `%25`, `北` -> `%E5%8C%97`), so no value can add a segment, end one early or
  climb out of its prefix;
- a missing field, `null` or the empty string: `__HIVE_DEFAULT_PARTITION__`, Hive's name for
  no value, which the engines above read as NULL;
- anything else (true/false, an object, an array, a value longer than 128 characters once
  encoded): `__invalid__`, or with PARTITION_INVALID=error the payload goes under
  `S3_ERROR_PREFIX` instead (`partition_invalid/`, in the same layout). Never dropped.

The store knows nothing of batches: it tells the uploaders which partition a payload is in,
as an opaque value to group by, and builds keys from it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any, NamedTuple

import orjson

MISSING = "__HIVE_DEFAULT_PARTITION__"
INVALID = "__invalid__"
MAX_VALUE_CHARS = 128  # a value as written in the key, escapes included
_SAFE = re.compile(r"[A-Za-z0-9._-]*")
_UNSAFE_CHAR = re.compile(r"[^A-Za-z0-9._-]")


class Partition(NamedTuple):
    """Where a payload goes within its time partition: the key segments (`device=a/`), and
    whether a value was unusable and PARTITION_INVALID=error sends it to the error prefix."""

    segments: str
    misfit: bool = False


NONE = Partition("")  # no PARTITION_BY: every payload in the same place


def encode_value(value: Any) -> str | None:
    """A field's value as it goes in a key; MISSING for no value, None if it cannot be one."""
    if value is None or value == "":
        return MISSING
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None  # true/false, objects, arrays: not a short string or a number
    if isinstance(value, float) and not math.isfinite(value):
        return None  # NaN and infinities: not JSON numbers
    if isinstance(value, str):
        text = value
    else:
        try:
            text = orjson.dumps(value).decode()  # as JSON writes the number: 42, 21.5, 1e+100
        except orjson.JSONEncodeError:  # an integer beyond 64 bits
            text = str(value)
    if _SAFE.fullmatch(text):
        encoded = text
    else:
        try:
            encoded = _UNSAFE_CHAR.sub(_escape, text)
        except UnicodeEncodeError:  # a lone surrogate: not text any reader could match
            return None
    if not encoded or len(encoded) > MAX_VALUE_CHARS:
        return None
    return encoded


def _escape(found: re.Match[str]) -> str:
    return "".join(f"%{byte:02X}" for byte in found.group().encode("utf-8"))


class Partitioner:
    """Turns a payload into its partition under PARTITION_BY (field names checked at start)."""

    def __init__(self, fields: Sequence[str], *, invalid_to_errors: bool = False) -> None:
        self.fields = tuple(fields)
        self._invalid_to_errors = invalid_to_errors

    def __bool__(self) -> bool:
        return bool(self.fields)

    def of(self, document: Any) -> Partition:
        if not self.fields:
            return NONE
        get = document.get if isinstance(document, dict) else (lambda name: None)
        segments: list[str] = []
        misfit = False
        for name in self.fields:
            value = encode_value(get(name))
            if value is None:
                value, misfit = INVALID, self._invalid_to_errors
            segments.append(f"{name}={value}/")
        return Partition("".join(segments), misfit)

    def of_all(self, documents: Sequence[Any]) -> list[Partition] | None:
        """Each document's partition; None when nothing is partitioned (all in one place)."""
        if not self.fields:
            return None
        return [self.of(document) for document in documents]
