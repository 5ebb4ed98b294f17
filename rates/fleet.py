"""Per fleet: TENANT_RATE held across every process and host, with few round trips to Redis.

Each process takes its tenants' allowance from Redis in blocks (`rates.redis_store`) and spends
it locally: a decision that the process's held allowance covers makes no round trip. Each
answer carries the bucket's level, and the process asks again only once the bucket could
grant a whole block: a tenant at or over its limit costs each process at most one round trip
per `block / rate` seconds (0.1 s at most), not one per request. Only one thread per
tenant and process asks Redis at a time; the others wait for its answer (at most `timeout`)
and then spend what it brought.

The error this allows: a process never holds more than `block` payloads taken and not spent.
Over any stretch of T seconds a fleet of P processes therefore accepts at most
`burst + rate * T + P * block` payloads of a tenant (the blocks held when the stretch began),
and, while the tenant's clients keep asking, at least `burst + rate * T - P * block` (blocks
stranded in processes its traffic no longer reaches).

When Redis fails (`rates.failover`), decisions follow the failure mode: `open` asks the
fallback limiter (the per-box one), `closed` refuses with a wait of at least 1 s.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import redis

from rates import gcra
from rates.failover import Failover
from rates.limiter import Limiter
from rates.redis_store import RedisBuckets

STORE_ERRORS = (redis.RedisError, OSError)
CLOSED_WAIT = 1.0  # failing closed: the least Retry-After a refusal carries
BLOCK_FRACTION = 0.05  # of the burst, per round trip ...
BLOCK_SECONDS = 0.1  # ... and no more than this long at the rate
MAX_BLOCK = 1000


def block_for(rate: float, burst: int) -> int:
    """Payloads a process takes per round trip: 5 % of the burst and at most 0.1 s at the
    rate (the same with the default burst, twice the rate), 1 to 1,000."""
    return max(1, min(MAX_BLOCK, int(min(burst * BLOCK_FRACTION, rate * BLOCK_SECONDS))))


@dataclass
class _Tenant:
    """One tenant's allowance in this process."""

    held: int = 0  # taken from Redis, not yet spent; at most the block
    level: float | None = None  # the fleet's bucket after the last round trip ...
    level_at: float = 0.0  # ... seen at this (monotonic) time
    refill: threading.Lock = field(default_factory=threading.Lock)  # one round trip at a time


class FleetRates:
    """A limiter over Redis with a fallback. Safe from any thread."""

    store = "redis"

    def __init__(
        self,
        buckets: RedisBuckets,
        fallback: Limiter,
        failover: Failover,
        *,
        timeout: float,
        block: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = buckets.rate
        self.burst = buckets.burst
        self.block = block or block_for(buckets.rate, buckets.burst)
        self.buckets = buckets
        self.fallback = fallback
        self.failover = failover
        self._timeout = timeout
        self._clock = clock
        self._lock = threading.Lock()  # guards every _Tenant's held and level
        self._tenants: dict[str | None, _Tenant] = {}
        self._returner: ThreadPoolExecutor | None = None

    def take(self, tenant: str | None, payloads: int) -> float:
        wait = self.take_now(tenant, payloads)
        if wait is not None:
            return wait
        if not self.failover.usable():  # a retry was due, and another caller is making it
            return self._without_store(tenant, payloads)
        probe = self.failover.failing  # this caller tries the failing store: no shortcut
        state = self._tenants.get(tenant) or self._add(tenant)
        if not state.refill.acquire(timeout=self._timeout):
            # Another thread's round trip has outlasted the timeout: do not queue behind it.
            return self._without_store(tenant, payloads)
        try:
            with self._lock:  # the round trip this thread waited for may have brought enough
                wait = None if probe else self._locally(state, payloads)
                if wait is not None:
                    return wait
                own = min(state.held, payloads)  # spent on it if Redis grants the rest
                state.held -= own
            return self._ask(tenant, state, payloads, own)
        finally:
            state.refill.release()

    def take_now(self, tenant: str | None, payloads: int) -> float | None:
        """From the held allowance, the last answer, or the fallback while failing; None when
        only a round trip can tell (then call `take` off the event loop)."""
        if self.failover.failing and self.failover.retry_in() > 0:
            return self._without_store(tenant, payloads)
        if self.failover.failing:
            return None  # a retry is due: `take` makes it
        state = self._tenants.get(tenant) or self._add(tenant)
        with self._lock:
            return self._locally(state, payloads)

    def give_back(self, tenant: str | None, payloads: int) -> None:
        """Kept in the process up to the block; what is over it goes back to Redis from a
        thread of this limiter's own, so no caller (an event loop) waits on the network."""
        if self.failover.failing:
            if self.failover.mode == "open":
                self.fallback.give_back(tenant, payloads)
            return
        state = self._tenants.get(tenant) or self._add(tenant)
        with self._lock:
            excess = self._keep(state, payloads)
        if excess > 0:
            self._returns().submit(self._return, tenant, excess)

    def recheck(self) -> None:
        """While Redis is failing, try it (a PING, within the timeout) once the backoff has
        passed, as a request would: the fleet limit, /healthz and the failing gauge come back
        with Redis even when no tenant is sending."""
        if not self.failover.failing or not self.failover.usable():
            return
        try:
            self.buckets.ping()
        except STORE_ERRORS as error:
            self.failover.failed(error)
        else:
            self.failover.succeeded()

    def status(self) -> dict[str, Any]:
        failing = self.failover.failing
        if not failing:
            in_force = self.store
        elif self.failover.mode == "open":
            in_force = self.fallback.status()["store"]
        else:
            in_force = "none: refusing (RATE_STORE_FAILURE=closed)"
        return {
            "store": self.store,
            "in_force": in_force,
            "rate": self.rate,
            "burst": self.burst,
            "block": self.block,
            "fallback": self.fallback.status()["store"],
            "redis": self.failover.status(),
        }

    def _locally(self, state: _Tenant, payloads: int) -> float | None:
        """Under the lock: 0.0 if the held allowance covers it, a wait if the last answer says
        the fleet's bucket cannot grant a block (or the collection) yet, None to ask Redis."""
        if state.held >= payloads:
            state.held -= payloads
            return 0.0
        if state.level is not None:
            level = state.level + (self._clock() - state.level_at) * self.rate
            enough = max(payloads - state.held, self.block)
            if level + gcra.EPSILON < enough:
                return (enough - level) / self.rate
        return None

    def _ask(self, tenant: str | None, state: _Tenant, payloads: int, own: int) -> float:
        need = payloads - own
        try:
            grant = self.buckets.take(tenant, need, max(need, self.block))
        except STORE_ERRORS as error:
            self.failover.failed(error)
            with self._lock:
                excess = self._keep(state, own)
            self._return(tenant, excess)
            return self._without_store(tenant, payloads)
        self.failover.succeeded()
        with self._lock:
            state.level, state.level_at = grant.level, self._clock()
            excess = self._keep(state, grant.granted - need if grant.granted else own)
        self._return(tenant, excess)
        return 0.0 if grant.granted else grant.wait

    def _keep(self, state: _Tenant, payloads: int) -> int:
        """Under the lock: hold `payloads` more, up to the block; what is over it is returned."""
        state.held += payloads
        excess = max(0, state.held - self.block)
        state.held -= excess
        return excess

    def _return(self, tenant: str | None, excess: int) -> None:
        """Give Redis back what a process may not hold (only after a give_back or a race)."""
        if excess <= 0 or not self.failover.usable():
            return
        try:
            self.buckets.give(tenant, excess)
        except STORE_ERRORS as error:
            self.failover.failed(error)  # those payloads are lost to the tenant: the safe side
        else:
            self.failover.succeeded()

    def _without_store(self, tenant: str | None, payloads: int) -> float:
        if self.failover.mode == "open":
            wait = self.fallback.take(tenant, payloads)
        else:
            wait = max(CLOSED_WAIT, self.failover.retry_in())
        self.failover.decided_without_store(refused=wait > 0)
        return wait

    def _returns(self) -> ThreadPoolExecutor:
        """The one thread that gives excess allowance back, made on first use."""
        with self._lock:
            if self._returner is None:
                self._returner = ThreadPoolExecutor(1, thread_name_prefix="rate-returns")
            return self._returner

    def _add(self, tenant: str | None) -> _Tenant:
        with self._lock:
            return self._tenants.setdefault(tenant, _Tenant())
