"""How long to wait between attempts: exponential backoff with full jitter, within a budget."""

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
