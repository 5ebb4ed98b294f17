"""How long to wait: between S3 attempts (backoff with full jitter, within a budget), between
restarts of a crashing uploader (OTP-style intensity and period), and until shutdown."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delays of `base * 2**n`, capped, each drawn uniformly below that (AWS's "full jitter")."""

    base: float = 0.05
    cap: float = 2.0
    budget: float = 30.0

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        ceiling = min(self.cap, self.base * (2**attempt))
        return (rng or random).uniform(0, ceiling)


@dataclass(slots=True)
class Deadline:
    """A moment shared by many threads after which work is spooled instead of attempted.

    Unset (infinite) while serving; shutdown sets it so retries stop in time to spool.
    """

    at: float = float("inf")
    changed: threading.Event = field(default_factory=threading.Event)

    def set(self, at: float) -> None:
        self.at = at
        self.changed.set()

    def passed(self) -> bool:
        return time.monotonic() >= self.at

    def remaining(self) -> float:
        return max(self.at - time.monotonic(), 0.0)


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """At most `max_restarts` per slot within `period` s, each after a doubling backoff;
    a message that crashed `poison_after` uploaders is not redelivered again."""

    max_restarts: int = 5
    period: float = 60.0
    backoff_base: float = 0.1
    backoff_cap: float = 5.0
    poison_after: int = 3

    def backoff(self, recent_restarts: int) -> float:
        return min(self.backoff_cap, self.backoff_base * 2 ** max(recent_restarts - 1, 0))
