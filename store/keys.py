"""Object keys: time-partitioned for map-reduce, safe whatever the client sends as version.

Layout: ``{prefix}[tenant={tenant}/]dt=YYYY-MM-DD/hour=HH/version={version}/{ms}-{unique}.json``
(`tenant=` only for a tenant's token; tenant names are configured, so they are safe).
A payload sent with an Idempotency-Key goes under ``{prefix}[tenant=..]idempotent/version=
{version}/{hash of tenant and key}-{index}.json`` instead: no time in it, so a resend lands on
the same key whenever it comes.
The time is when the payload was accepted (UTC), so a retry or a redelivery after a crash
builds the very same key and overwrites instead of duplicating.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

MAX_VERSION_CHARS = 64
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def sanitise_version(version: str) -> str:
    """Reduce a client-chosen version to a short, single, harmless key segment."""
    cleaned = _UNSAFE.sub("_", version)[:MAX_VERSION_CHARS].strip("._-")
    return cleaned or "unknown"


@dataclass(frozen=True, slots=True)
class ObjectKey:
    """The S3 key of one stored payload (or batch), derived only from fixed facts."""

    prefix: str
    version: str
    received_at: float
    unique: str
    suffix: str = ".json"
    tenant: str | None = None
    idempotent: bool = False  # `unique` comes from the client's Idempotency-Key: no time in it

    def __str__(self) -> str:
        moment = time.gmtime(self.received_at)
        millis = int(self.received_at * 1000)
        tenant = f"tenant={self.tenant}/" if self.tenant else ""
        if self.idempotent:  # the same key however late the collection is sent again
            return (
                f"{self.prefix}{tenant}idempotent/version={sanitise_version(self.version)}"
                f"/{self.unique}{self.suffix}"
            )
        return (
            f"{self.prefix}{tenant}dt={time.strftime('%Y-%m-%d', moment)}/hour={moment.tm_hour:02d}"
            f"/version={sanitise_version(self.version)}/{millis}-{self.unique}{self.suffix}"
        )
