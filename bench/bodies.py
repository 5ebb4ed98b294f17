"""What wrk posts: the same three payloads as the JSON document, or as gzip-compressed NDJSON.

A `Post` is one request as wrk sends it over and over: the path (with any query string), the
headers and the body's bytes. Every row posts `JSON_POST` unless its scenario says otherwise.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass

VERSION = "1.4.2"
TOKEN = "bench"  # INGEST_TOKENS in bench/scenarios.py's SINK_ENV
PAYLOADS = (
    '{"device":"sensor-0042","temp":21.5,"ts":1732800000,"tags":["a","b"]}',
    '{"device":"sensor-0043","temp":19.0,"ts":1732800001,"tags":["c"]}',
    '{"device":"sensor-0044","temp":23.25,"ts":1732800002,"tags":[]}',
)


@dataclass(frozen=True)
class Post:
    label: str  # how the verdicts name it: "JSON", "gzip NDJSON"
    path: str  # with the query string, if any
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def lua(self) -> str:
        """The Lua lines that set up wrk's request (its URL gives the path: see `path`)."""
        lines = ['wrk.method = "POST"']
        lines += [f'wrk.headers["{name}"] = "{value}"' for name, value in self.headers]
        lines.append(f"wrk.body = {lua_string(self.body)}")
        return "\n".join(lines)


def lua_string(data: bytes) -> str:
    """`data` as a Lua string literal: printable ASCII as it is, any other byte (and ' and \\)
    as a decimal escape of three digits, so that a digit after it is not read as part of it."""
    text = "".join(
        chr(byte) if 32 <= byte < 127 and byte not in b"'\\" else f"\\{byte:03d}" for byte in data
    )
    return f"'{text}'"


# The original document: the token in the body, the version beside it.
JSON_POST = Post(
    "JSON",
    "/payloads",
    (("Content-Type", "application/json"),),
    (f'{{"version":"{VERSION}","token":"{TOKEN}","data":[' + ",".join(PAYLOADS) + "]}").encode(),
)
# Issue 12: one payload a line, gzipped (mtime 0: the same bytes every run), the version in
# the query string and the token in the Authorization header.
GZIP_NDJSON_POST = Post(
    "gzip NDJSON",
    f"/payloads?version={VERSION}",
    (
        ("Content-Type", "application/x-ndjson"),
        ("Content-Encoding", "gzip"),
        ("Authorization", f"Bearer {TOKEN}"),
    ),
    gzip.compress("".join(f"{payload}\n" for payload in PAYLOADS).encode(), mtime=0),
)
