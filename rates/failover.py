"""Is the fleet's store in force, and when to ask it again after it failed.

A failed round trip (timeout, refused connection, an error from Redis) puts the store out of
force; decisions then follow RATE_STORE_FAILURE without asking it, and one caller tries it
again after a backoff (0.5 s, doubling up to 10 s, with jitter so a fleet does not retry in
step). The first success puts it back in force. One log line when it starts failing, one when
it recovers; never one per request. Counts are kept here and told to an observer, so the web
layer can export them as metrics without this package knowing prometheus.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger("mailroom.rates")

FIRST_BACKOFF = 0.5
MAX_BACKOFF = 10.0


class StoreObserver(Protocol):
    """Told of what metrics count; each call must be cheap and must not raise."""

    def round_trip(self, ok: bool) -> None:
        """One round trip to the store ended: answered in time, or failed."""
        ...

    def without_store(self, refused: bool) -> None:
        """One decision was made without the store (failing open or closed)."""
        ...


class NoObserver:
    def round_trip(self, ok: bool) -> None:
        return None

    def without_store(self, refused: bool) -> None:
        return None


class Failover:
    """Thread-safe. `usable()` is the only call on the hot path: one attribute read while the
    store is healthy."""

    def __init__(
        self,
        name: str,
        mode: str,
        *,
        observer: StoreObserver | None = None,
        clock: Callable[[], float] = time.monotonic,
        first_backoff: float = FIRST_BACKOFF,
        max_backoff: float = MAX_BACKOFF,
    ) -> None:
        if mode not in ("open", "closed"):
            raise ValueError(f"failure mode must be open or closed, not {mode!r}")
        self.name = name  # shown in logs and /healthz: never a password
        self.mode = mode
        self.failing = False
        self.reachable: bool | None = None  # None: not asked yet
        self.last_error: str | None = None
        self.failing_since: float | None = None  # wall-clock time, for /healthz
        self.failures = 0  # failed round trips
        self.round_trips = 0
        self.decisions_without_store = 0
        self.observer: StoreObserver = observer or NoObserver()
        self._clock = clock
        self._first_backoff = first_backoff
        self._max_backoff = max_backoff
        self._backoff = first_backoff
        self._retry_at = 0.0
        self._started_failing = 0.0
        self._lock = threading.Lock()

    def usable(self) -> bool:
        """May the store be asked now? Yes while healthy; while failing, yes for one caller
        once the backoff has passed (the next retry is pushed back before it returns, so
        the others keep deciding without the store meanwhile)."""
        if not self.failing:
            return True
        now = self._clock()
        if now < self._retry_at:
            return False
        with self._lock:
            if not self.failing:
                return True
            if now < self._retry_at:
                return False
            self._retry_at = now + self._backoff
            return True

    def retry_in(self) -> float:
        """Seconds until the store will be tried again (0.0 while healthy)."""
        return max(0.0, self._retry_at - self._clock()) if self.failing else 0.0

    def succeeded(self) -> None:
        self.round_trips += 1
        self.observer.round_trip(True)
        self.reachable = True
        if not self.failing:
            return
        with self._lock:
            if not self.failing:
                return
            self.failing = False
            self.failing_since = None
            self._backoff = self._first_backoff
            outage = self._clock() - self._started_failing
        log.info(
            "rate store %s reachable again after %.1f s: tenant limits hold for the fleet again",
            self.name,
            outage,
            extra={"event": "rate_store_recovered", "outage_seconds": round(outage, 3)},
        )

    def failed(self, error: BaseException) -> None:
        reason = describe(error)
        self.round_trips += 1
        self.observer.round_trip(False)
        with self._lock:
            self.failures += 1
            self.reachable = False
            self.last_error = reason
            first = not self.failing
            now = self._clock()
            if first:
                self.failing = True
                self.failing_since = time.time()
                self._started_failing = now
                self._backoff = self._first_backoff
            else:
                self._backoff = min(self._backoff * 2, self._max_backoff)
            self._retry_at = now + self._backoff * random.uniform(0.8, 1.2)
        if first:
            log.warning(
                "rate store %s failed (%s): %s until it answers again",
                self.name,
                reason,
                "per-box limits hold (RATE_STORE_FAILURE=open)"
                if self.mode == "open"
                else "tenant-limited collections are refused (RATE_STORE_FAILURE=closed)",
                extra={"event": "rate_store_failing", "error": reason, "mode": self.mode},
            )

    def decided_without_store(self, refused: bool) -> None:
        self.decisions_without_store += 1
        self.observer.without_store(refused)

    def status(self) -> dict[str, Any]:
        return {
            "url": self.name,
            "reachable": self.reachable,
            "failing": self.mode if self.failing else None,
            "failure_mode": self.mode,
            "failing_since": self.failing_since,
            "last_error": self.last_error,
            "failures": self.failures,
            "round_trips": self.round_trips,
            "decisions_without_store": self.decisions_without_store,
        }


def describe(error: BaseException) -> str:
    """One short line naming the failure (redis-py's messages name host and port, no
    password)."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}"[:200] if text else type(error).__name__
