"""Parsing and validating one posted collection; every failure names the field at fault."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

MAX_VERSION_CHARS = 64
MAX_TOKEN_CHARS = 256
VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


class InvalidCollection(ValueError):
    """The body is not an acceptable collection; `field` names what is wrong."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True, slots=True)
class Collection:
    """A valid `{"version", "token", "data"}` body."""

    version: str
    token: str
    data: list[dict[str, Any]]


def parse_collection(body: bytes, *, max_payloads: int) -> Collection:
    """Decode and check a request body, or raise InvalidCollection."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise InvalidCollection("body", f"is not valid JSON ({error})") from None
    if not isinstance(document, dict):
        raise InvalidCollection("body", "must be a JSON object")
    version = _required_string(document, "version")
    if len(version) > MAX_VERSION_CHARS or not VERSION.fullmatch(version):
        raise InvalidCollection(
            "version",
            f"must be 1 to {MAX_VERSION_CHARS} characters of letters, digits and . _ + - "
            "(starting with a letter or digit)",
        )
    token = _required_string(document, "token")
    if not 0 < len(token) <= MAX_TOKEN_CHARS:
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


def _required_string(document: dict[str, Any], field: str) -> str:
    if field not in document:
        raise InvalidCollection(field, "is required")
    value = document[field]
    if not isinstance(value, str):
        raise InvalidCollection(field, "must be a string")
    return value
