"""The spool's files: how each line is written and read, and what a file's name says.

One line per object: `{"key", "body" (base64), "payloads", "to": {endpoint, bucket, prefix}}`.
A file is named `<time_ns first spooled>-<pid>-<random>.spool`; a write in progress
`.tmp-<that>`; a file being replayed `<that>.replaying-<pid>`.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from store.objects import S3Object

SUFFIX = ".spool"
CLAIM = ".replaying-"
TEMPORARY = ".tmp-"


@dataclass(frozen=True, slots=True)
class Destination:
    """Where a spooled object was going: replay sends it there and nowhere else."""

    endpoint: str  # "aws", "embedded", or an S3-compatible endpoint's URL
    bucket: str
    prefix: str

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix} at {self.endpoint}"

    def as_json(self) -> dict[str, str]:
        return {"endpoint": self.endpoint, "bucket": self.bucket, "prefix": self.prefix}


UNLABELLED = Destination("unknown (written before spool files named their destination)", "?", "")


def encode_line(obj: S3Object, destination: dict[str, str]) -> bytes:
    return orjson.dumps(
        {
            "key": obj.key,
            "body": base64.b64encode(obj.body).decode(),
            "payloads": obj.payloads,
            "to": destination,
        }
    )


def destination_of_line(raw: dict) -> Destination:
    to = raw.get("to")
    if not isinstance(to, dict):
        return UNLABELLED
    try:
        return Destination(str(to["endpoint"]), str(to["bucket"]), str(to["prefix"]))
    except KeyError:
        return UNLABELLED


def read_line(line: bytes) -> tuple[S3Object, Destination] | None:
    """One line's object and destination, or None if it cannot be read (replay quarantines
    it; counts leave it out)."""
    try:
        raw = orjson.loads(line)
        obj = S3Object(
            str(raw["key"]), base64.b64decode(raw["body"], validate=True), int(raw["payloads"])
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):  # binascii.Error too
        return None
    return obj, destination_of_line(raw)


def read_file(path: Path) -> tuple[list[S3Object], list[tuple[int, bytes]]]:
    """The objects in a spool file, and the (line number, line) of each it could not read."""
    objects: list[S3Object] = []
    bad: list[tuple[int, bytes]] = []
    for number, line in enumerate(path.read_bytes().splitlines(), start=1):
        if not line.strip():
            continue
        found = read_line(line)
        if found is None:
            bad.append((number, line))
        else:
            objects.append(found[0])
    return objects, bad


def spooled_at(path: Path) -> int:
    """The time_ns a spool file's name starts with (0 if it has none: oldest)."""
    head = path.name.split("-", 1)[0]
    return int(head) if head.isdigit() else 0


def age(spooled_at: int | None, now: float | None = None) -> float | None:
    if spooled_at is None:
        return None
    return max((now if now is not None else time.time()) - spooled_at / 1e9, 0.0)


def pid_at_end(name: str) -> int:
    tail = name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def writer_pid(name: str) -> int:
    """The pid in a temporary file's name: .tmp-<time_ns>-<pid>-<random>.spool."""
    parts = name.removeprefix(TEMPORARY).split("-")
    return int(parts[1]) if len(parts) > 2 and parts[1].isdigit() else 0
