"""Request ids, and the record of the request being answered (for the logs and metrics).

The caller's X-Request-ID is honoured if it is short and plain, or one is made; it is echoed
back and carried by every log line written while the request is answered.
"""

from __future__ import annotations

import contextvars
import re
from dataclasses import dataclass

from actors import new_id

HEADER = "X-Request-ID"
_ACCEPTABLE = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")


@dataclass(slots=True)
class RequestRecord:
    """One request on its way through the app: who it is and what it carried."""

    request_id: str
    started: float
    payloads: int | None = None  # the collection's count, once it was read
    tenant: str | None = None


current_request: contextvars.ContextVar[RequestRecord | None] = contextvars.ContextVar(
    "mailroom_request", default=None
)


def current_request_id() -> str | None:
    record = current_request.get()
    return None if record is None else record.request_id


def request_id(given: str | None) -> str:
    """The caller's id if it is short and plain; otherwise a fresh one (32 hex digits, unique
    across processes and hosts without a clock or a system call: cheaper than a uuid4)."""
    if given and _ACCEPTABLE.fullmatch(given):
        return given
    return new_id()
