"""How long to wait: between S3 attempts (backoff with full jitter, within a budget), between
restarts of a crashing actor (OTP-style intensity and period), and until shutdown."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass

MAX_EXPONENT = 30  # 2**30 x 50 ms is far past any cap; beyond it the float would overflow


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delays of `base * 2**n`, capped, each drawn uniformly below that (AWS's "full jitter")."""

    base: float = 0.05
    cap: float = 2.0
    budget: float = 30.0

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        ceiling = min(self.cap, self.base * (2 ** min(attempt, MAX_EXPONENT)))
        return (rng or random).uniform(0, ceiling)


class Deadline:
    """A moment shared by many threads after which work is left to the final sweep.

    Unset (infinite) while serving; shutdown sets it. `sleep` is how every wait between
    attempts is done: it lasts the whole delay (so backoff holds during a drain), but no
    longer than the deadline, and setting the deadline wakes sleepers to look again.
    """

    def __init__(self) -> None:
        self._at = float("inf")
        self._changed = threading.Condition()

    @property
    def at(self) -> float:
        return self._at

    def set(self, at: float) -> None:
        with self._changed:
            self._at = at
            self._changed.notify_all()

    def passed(self) -> bool:
        return time.monotonic() >= self._at

    def remaining(self) -> float:
        return max(self._at - time.monotonic(), 0.0)

    def sleep(self, delay: float) -> None:
        """Wait `delay` seconds, or until the deadline if that comes first."""
        until = time.monotonic() + delay
        with self._changed:
            while True:
                left = min(until, self._at) - time.monotonic()
                if left <= 0:
                    return
                self._changed.wait(left)


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """OTP's restart intensity: at most `max_restarts` restarts of one child within `period`
    seconds, each after a doubling backoff; past that the supervisor escalates. A unit of work
    that crashed `poison_after` behaviours is a poison message and is spooled, not retried."""

    max_restarts: int = 5
    period: float = 60.0
    backoff_base: float = 0.1
    backoff_cap: float = 5.0
    poison_after: int = 3

    def backoff(self, recent_restarts: int) -> float:
        exponent = min(max(recent_restarts - 1, 0), MAX_EXPONENT)
        return min(self.backoff_cap, self.backoff_base * 2**exponent)
