"""What one process of tests/test_rates.py runs: get its limiter as a serving process would,
wait for the common start, take one payload at a time for a tenant until the common end, and
report the counts. Kept apart from the test module so a spawned child imports little."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from multiprocessing.synchronize import Event
from typing import Any

from config import Settings
from rates import Limiter, limiter_for

MAX_DECISIONS = 500_000  # every flood is bounded in count as well as in time
REFUSED_PAUSE = 0.002  # a refused client backs off a little, so floods do not just burn CPU


def take_until(
    limiter: Limiter,
    tenant: str,
    start_at: float,
    duration: float,
    pace: float | None = None,
) -> dict[str, Any]:
    """From `start_at` to `start_at + duration` (time.monotonic, the same in every process
    of a host): one payload at a time, as fast as refusals allow, or every `pace` seconds."""
    while time.monotonic() < start_at:
        time.sleep(0.001)
    end = start_at + duration
    accepted = refused = 0
    slowest = 0.0
    for _ in range(MAX_DECISIONS):
        before = time.monotonic()
        if before >= end:
            break
        wait = limiter.take(tenant, 1)
        slowest = max(slowest, time.monotonic() - before)
        if wait == 0.0:
            accepted += 1
        else:
            refused += 1
        if pace is not None:
            time.sleep(pace)
        elif wait:
            time.sleep(min(wait, REFUSED_PAUSE))
    return {
        "pid": os.getpid(),
        "tenant": tenant,
        "accepted": accepted,
        "refused": refused,
        "slowest": slowest,
        "status": limiter.status(),
    }


def flood(
    env: Mapping[str, str],
    tenant: str,
    duration: float,
    pace: float | None,
    ready: Any,
    go: Event,
    start: Any,
    results: Any,
) -> None:
    """A spawned serving process: its limiter from `env` alone, as `limiter_for` gives it."""
    limiter = limiter_for(Settings.from_env(env), env)
    ready.put(os.getpid())
    if not go.wait(60):
        results.put(None)
        return
    results.put(take_until(limiter, tenant, start.value, duration, pace))


def forked(limiter: Limiter, tenant: str, start_at: float, duration: float, results: Any) -> None:
    """A forked worker: the limiter its parent built before the fork."""
    results.put(take_until(limiter, tenant, start_at, duration))
