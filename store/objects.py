"""What is written to S3: a key and the bytes under it, ready to upload, spool or replay."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class S3Object:
    """One object, fully encoded: uploading it twice writes the same thing to the same key."""

    key: str
    body: bytes
    content_encoding: str | None = None
    payloads: int = 1


def encode_document(document: Any) -> bytes:
    return orjson.dumps(document)
