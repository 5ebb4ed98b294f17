"""The access log: one line per answered request, formatted off the request path.

The middleware hands the sink one `AccessRecord` (a tuple: cheap to make) per answer; the
sink (mailroom.access_log's `AccessLogWriter`) formats many at a time with `access_line`,
in its own thread, and writes them together. Fields: `event` ("access"), `method`, `path`
(no query string), `status`, `bytes` (of the response body), `duration_ms` (time in the app,
the body read included), `request_id`, and `payloads` (with `tenant` when the token was a
tenant's) for `POST /payloads` once the collection was counted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from web.observer import KNOWN_METHODS

MESSAGE = "%s %s %d in %.2f ms"
MAX_PATH_CHARS = 256
MAX_METHOD_CHARS = 32


class AccessRecord(NamedTuple):
    """One answer, as the request left it: nothing formatted yet."""

    time: float  # time.time() when it was answered
    method: str
    path: str
    status: int
    body_bytes: int | None
    seconds: float
    request_id: str
    payloads: int | None
    tenant: str | None


AccessSink = Callable[[AccessRecord], None]


def shown(record: AccessRecord) -> tuple[str, str, float]:
    """Method, path and milliseconds as the line shows them: client input kept to one short
    printable line."""
    method = record.method
    if method not in KNOWN_METHODS:
        method = printable(method, MAX_METHOD_CHARS)
    return method, printable(record.path, MAX_PATH_CHARS), round(record.seconds * 1000, 3)


def access_line(record: AccessRecord) -> tuple[str, dict[str, Any]]:
    """The line's message and fields."""
    method, path, milliseconds = shown(record)
    fields: dict[str, Any] = {
        "event": "access",
        "method": method,
        "path": path,
        "status": record.status,
        "bytes": record.body_bytes,
        "duration_ms": milliseconds,
        "request_id": record.request_id,
    }
    if record.payloads is not None:
        fields["payloads"] = record.payloads
        if record.tenant is not None:
            fields["tenant"] = record.tenant
    return MESSAGE % (method, path, record.status, milliseconds), fields


def printable(text: str, limit: int) -> str:
    """Client input, kept to one short line: control characters escaped, and the length
    capped after escaping (an escaped character takes up to 10), so that a whole access line
    stays within one atomic pipe write."""
    if len(text) <= limit and text.isprintable():
        return text
    return ascii(text[:limit])[1:-1][:limit]
