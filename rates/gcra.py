"""The arithmetic of a tenant's limit: GCRA, a token bucket kept as one number.

A bucket that fills at `rate` payloads a second up to `burst` is stored as its theoretical
arrival time (TAT): the moment it would be full again. The level now is
`burst - (tat - now) * rate`, so taking `n` payloads moves the TAT on by `n / rate`, and a
TAT in the past means a full bucket (so a zeroed slot is a full bucket). One number per tenant
is what the shared-memory slots and the Redis script (the same steps, in Lua) keep; as
redis-cell does, each decision is one read and one write of it.
"""

from __future__ import annotations

from typing import NamedTuple

EPSILON = 1e-9  # float dust: a full bucket of 100 must hold 100, not 99.9999999


class Step(NamedTuple):
    """The bucket's new TAT and the seconds to wait (0.0: taken)."""

    tat: float
    wait: float


def level(tat: float, now: float, rate: float, burst: float) -> float:
    """Payloads the bucket holds at `now`."""
    return burst - (max(tat, now) - now) * rate


def take(tat: float, now: float, payloads: int, rate: float, burst: float) -> Step:
    """Take all `payloads` or none: the new TAT and 0.0, or the TAT unchanged and the seconds
    until the bucket will hold them (an endless wait if `payloads` exceeds `burst`)."""
    held = level(tat, now, rate, burst)
    if held + EPSILON >= payloads:
        return Step(max(tat, now) + payloads / rate, 0.0)
    return Step(tat, (payloads - held) / rate)


def give_back(tat: float, now: float, payloads: int, rate: float) -> float:
    """The TAT once `payloads` taken earlier are returned (a bucket never holds over full)."""
    return max(now, tat - payloads / rate)
