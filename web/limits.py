"""TENANT_RATE: payloads per second per tenant, with a burst, answered 429 beyond it.

A token bucket per tenant (no tenant counts as one): it fills at `rate` payloads a second up
to `burst`, and a collection takes as many as it holds, all or none. 429 says "you, slow
down", with the seconds until the bucket holds enough; 503 stays "the service is full".
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable


class TenantRates:
    """Safe from any thread; a no-op when `rate` is 0."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str | None, tuple[float, float]] = {}  # tenant: (level, when)

    def give_back(self, tenant: str | None, payloads: int) -> None:
        """Return what `take` took for a collection that was then refused anyway."""
        if self.rate <= 0:
            return
        with self._lock:
            level, when = self._buckets.get(tenant, (self._burst, self._clock()))
            self._buckets[tenant] = (min(self._burst, level + payloads), when)

    def take(self, tenant: str | None, payloads: int) -> float:
        """Take `payloads` from the tenant's bucket: 0.0 if it held them, else the seconds to
        wait until it will (nothing taken)."""
        if self.rate <= 0:
            return 0.0
        now = self._clock()
        with self._lock:
            level, when = self._buckets.get(tenant, (self._burst, now))
            level = min(self._burst, level + (now - when) * self.rate)
            if level >= payloads:
                self._buckets[tenant] = (level - payloads, now)
                return 0.0
            self._buckets[tenant] = (level, now)
            return (payloads - level) / self.rate


def retry_after(seconds: float) -> str:
    """Whole seconds for a Retry-After header, at least 1."""
    return str(max(1, math.ceil(seconds)))
