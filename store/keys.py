"""Object keys: time-partitioned for map-reduce, safe whatever the client sends.

One layout for every payload, single or batched, sent with an Idempotency-Key or not:
``{prefix}[tenant={tenant}/]dt=YYYY-MM-DD/hour=HH/version={version}/[{field}={value}/...]
{ms}-{unique}{suffix}`` (`tenant=` only for a tenant's token: tenant names are configured,
so they are safe; the `field=value/` segments only with PARTITION_BY, made safe by
`store/partitions.py`).
The time is when the payload was (first) accepted, UTC, so a retry, a redelivery after a
crash, the spool and a replay all build the very same key, and a conditional write finds it.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

MAX_VERSION_CHARS = 64
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def time_partition(received_at: float) -> int:
    """Which `dt=/hour=` partition a moment's key lies in (the hours since the epoch, UTC):
    payloads batched together must share it."""
    return int(received_at // 3600)


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
    partition: str = ""  # PARTITION_BY's segments, `device=a/region=b/`, already made safe

    def __str__(self) -> str:
        moment = time.gmtime(self.received_at)
        millis = int(self.received_at * 1000)
        tenant = f"tenant={self.tenant}/" if self.tenant else ""
        return (
            f"{self.prefix}{tenant}dt={time.strftime('%Y-%m-%d', moment)}/hour={moment.tm_hour:02d}"
            f"/version={sanitise_version(self.version)}/{self.partition}"
            f"{millis}-{self.unique}{self.suffix}"
        )
