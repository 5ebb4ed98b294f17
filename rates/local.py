"""Per process: one bucket per tenant in this process's memory.

What a single process uses when nothing was prepared for it to share (tests, `mailroom serve`
run by hand as one process), and for a tenant the shared file has no slot for. With several
processes each keeps its own, so the limit multiplies with them: `rates.box` is the cure.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from rates import gcra


class LocalRates:
    """Safe from any thread."""

    store = "process"

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._lock = threading.Lock()
        self._tats: dict[str | None, float] = {}  # an absent tenant has a full bucket

    def take(self, tenant: str | None, payloads: int) -> float:
        now = self._clock()
        with self._lock:
            step = gcra.take(self._tats.get(tenant, 0.0), now, payloads, self.rate, self.burst)
            self._tats[tenant] = step.tat
        return step.wait

    take_now = take  # never waits on the network

    def give_back(self, tenant: str | None, payloads: int) -> None:
        now = self._clock()
        with self._lock:
            tat = self._tats.get(tenant, 0.0)
            self._tats[tenant] = gcra.give_back(tat, now, payloads, self.rate)

    def status(self) -> dict[str, Any]:
        return {"store": self.store, "in_force": self.store, "rate": self.rate, "burst": self.burst}

    def recheck(self) -> None:
        return None  # nothing to fail
