"""What `/healthz` shows and the gauges sample, built from the ledger and the spool directory.

No actor is asked: the report reads shared, locked state. It is cached for a second so a flood
of health checks costs one directory listing a second, not one per call.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

from actors import ActorSystem
from store.spool import DeadLetterSpool


class CachedReport:
    """The last report, rebuilt when older than `max_age` seconds (by one caller at a time)."""

    def __init__(self, build: Callable[[], dict[str, Any]], *, max_age: float) -> None:
        self._build = build
        self._max_age = max_age
        self._lock = threading.Lock()
        self._report: dict[str, Any] | None = None
        self._built = 0.0

    def get(self) -> dict[str, Any]:
        report = self._report
        if report is not None and time.monotonic() - self._built < self._max_age:
            return report
        with self._lock:
            if self._report is None or time.monotonic() - self._built >= self._max_age:
                self._report = self._build()
                self._built = time.monotonic()
            return self._report


def health_report(system: ActorSystem, spool: DeadLetterSpool) -> dict[str, Any]:
    """What /healthz shows and the gauges sample: from the ledger, no actor is asked."""
    state = system.snapshot()
    footprint = spool.footprint()
    return {
        "slots_alive": sum(state.alive),
        "slots": [
            {"slot": slot, "alive": alive, "depth": depth}
            for slot, (alive, depth) in enumerate(
                zip(state.alive, state.ledger.depths, strict=True)
            )
        ],
        "router_alive": state.router_alive,
        "s3": {"reachable": state.s3_error is None, "error": state.s3_error},
        "held": state.ledger.outstanding,
        # One object per payload: the S3 pace measured and what may be owed at that pace.
        "drain": {
            "payloads_per_second": state.drain.payloads_per_second,
            "held_limit": state.drain.limit,
            "uploads_measured": state.drain.uploads_measured,
        },
        "gave_up": state.gave_up,
        "spool": {
            "files": footprint.files,
            "bytes": footprint.bytes,
            "oldest_age_seconds": None
            if footprint.oldest_age is None
            else round(footprint.oldest_age, 1),
            "writable": state.spool_error is None,
            "error": state.spool_error,
        },
        "pid": os.getpid(),
    }
