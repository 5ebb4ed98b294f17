"""Parsing and validating one posted collection; every failure names the field at fault."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any, NamedTuple

import orjson

MAX_VERSION_CHARS = 64
MAX_TOKEN_CHARS = 256
VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
TOP_LEVEL = ("version", "token", "data")
INT_MIN, UINT_MAX = -(2**63), 2**64 - 1
# orjson turns integers beyond 64 bits into floats and keeps the last of duplicate keys, both
# silently. A body that may hold either (a run of 19+ digits; a top-level name twice or
# written with escapes) is parsed again, strictly, by the standard library: rare and exact.
# A run of 19 digits is found by mapping every digit to "1" and anything else to " " (one C
# pass, several times faster than a regular expression) and looking for nineteen "1"s.
_DIGITS_AS_ONES = bytes(0x31 if 0x30 <= byte <= 0x39 else 0x20 for byte in range(256))
_NINETEEN_DIGITS = b"1" * 19


class InvalidCollection(ValueError):
    """The body is not an acceptable collection; `field` names what is wrong."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class Collection(NamedTuple):
    """A valid `{"version", "token", "data"}` body."""

    version: str
    token: str | None  # None only when the token came in the Authorization header
    data: list[dict[str, Any]]


def parse_collection(body: bytes, *, max_payloads: int, token_required: bool = True) -> Collection:
    """Decode and check a request body, or raise InvalidCollection.

    `token_required` False: the client was identified by its Authorization header, and the
    body may leave the token out."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise InvalidCollection("body", f"is not valid JSON ({error})") from None
    if _needs_strict_parse(body):
        _parse_strictly(body)
    if not isinstance(document, dict):
        raise InvalidCollection("body", "must be a JSON object")
    version = check_version(_required_string(document, "version"))
    if "token" not in document and not token_required:
        token = None
    elif not 0 < len(token := _required_string(document, "token")) <= MAX_TOKEN_CHARS:
        raise InvalidCollection("token", f"must be 1 to {MAX_TOKEN_CHARS} characters")
    data = document.get("data")
    if "data" not in document:
        raise InvalidCollection("data", "is required")
    if not isinstance(data, list):
        raise InvalidCollection("data", "must be an array of objects")
    if not data:
        raise InvalidCollection("data", "must hold at least one payload")
    if len(data) > max_payloads:
        raise InvalidCollection("data", f"holds {len(data)} payloads; at most {max_payloads}")
    for index, payload in enumerate(data):
        if not isinstance(payload, dict):
            raise InvalidCollection(f"data[{index}]", "must be a JSON object")
    return Collection(version, token, data)


def check_version(version: str | None, field: str = "version") -> str:
    """A version as the JSON body's `version` must be, wherever it came from."""
    if version is None:
        raise InvalidCollection(field, "is required")
    if len(version) > MAX_VERSION_CHARS or not VERSION.fullmatch(version):
        raise InvalidCollection(
            field,
            f"must be 1 to {MAX_VERSION_CHARS} characters of letters, digits and . _ + - "
            "(starting with a letter or digit)",
        )
    return version


def parse_ndjson(body: bytes, *, max_payloads: int) -> list[dict[str, Any]]:
    """One JSON object per line (blank lines skipped); the first bad line refuses them all."""
    data: list[dict[str, Any]] = []
    strict = _long_digits(body)
    for number, line in enumerate(_lines(body), start=1):
        if not line.strip():
            continue
        field = f"line {number}"
        try:
            payload = orjson.loads(line)
        except orjson.JSONDecodeError as error:
            raise InvalidCollection(field, f"is not valid JSON ({error})") from None
        if strict:
            _parse_strictly(line, field)
        if not isinstance(payload, dict):
            raise InvalidCollection(field, "must be a JSON object")
        data.append(payload)
        if len(data) > max_payloads:
            raise InvalidCollection("body", f"holds more than {max_payloads} payloads")
    if not data:
        raise InvalidCollection("body", "must hold at least one payload (one JSON object a line)")
    return data


def _lines(body: bytes) -> Iterator[bytes]:
    """One line at a time: a body of millions of tiny lines is refused after
    MAX_PAYLOADS_PER_REQUEST of them, not split whole first."""
    start = 0
    while start <= len(body):
        end = body.find(b"\n", start)
        if end < 0:
            end = len(body)
        yield body[start:end]
        start = end + 1


def _required_string(document: dict[str, Any], field: str) -> str:
    if field not in document:
        raise InvalidCollection(field, "is required")
    value = document[field]
    if not isinstance(value, str):
        raise InvalidCollection(field, "must be a string")
    return value


def _long_digits(body: bytes) -> bool:
    return _NINETEEN_DIGITS in body.translate(_DIGITS_AS_ONES)


def _needs_strict_parse(body: bytes) -> bool:
    return (
        b"\\u" in body
        or body.count(b'"version"') > 1
        or body.count(b'"token"') > 1
        or body.count(b'"data"') > 1
        or _long_digits(body)
    )


def _parse_strictly(body: bytes, where: str = "body") -> None:
    """Refuse integers beyond 64 bits and a top-level name given twice (orjson allows both)."""
    objects: list[list[tuple[str, Any]]] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        objects.append(items)
        return dict(items)

    def integer(text: str) -> int:
        value = int(text)
        if not INT_MIN <= value <= UINT_MAX:
            raise InvalidCollection(where, f"holds an integer beyond 64 bits ({text[:30]})")
        return value

    try:
        json.loads(body, object_pairs_hook=pairs, parse_int=integer)
    except InvalidCollection:
        raise
    except RecursionError:  # orjson allows 1024 levels; the standard library a little fewer
        raise InvalidCollection(where, "is nested too deeply") from None
    except ValueError as error:
        raise InvalidCollection(where, f"is not valid JSON ({error})") from None
    if objects:
        names = [name for name, _ in objects[-1]]  # the outermost object is built last
        for name in TOP_LEVEL:
            if names.count(name) > 1:
                raise InvalidCollection(name, "is given more than once")
