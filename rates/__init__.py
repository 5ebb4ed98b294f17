"""Tenant rate limits per process, per box (shared memory) or per fleet (Redis).

Knows nothing of HTTP or actors. The wiring needs three calls: `prepare_box(settings)` in the
main process before its workers start (put the handle's `env` into theirs, `cleanup()` after),
`limiter_for(settings)` once in each serving process, and `check_rate_store(settings)` for a
start-up line. Every limiter is a `Limiter`: `take`, `take_now` (never waits on the network;
None means "call `take` off the event loop"), `give_back` (never waits on the network),
`status`, and `rate`, `burst`.
"""

from __future__ import annotations

from rates.box import BoxFile
from rates.build import check_rate_store, limiter_for, prepare_box
from rates.failover import StoreObserver
from rates.limiter import Limiter

__all__ = [
    "BoxFile",
    "Limiter",
    "StoreObserver",
    "check_rate_store",
    "limiter_for",
    "prepare_box",
]
