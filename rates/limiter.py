"""What every tenant limiter offers the web layer, and the one for TENANT_RATE=0.

The shape is the one `web.limits.TenantRates` has always had, so the web layer swaps a limiter
in with one line: `take` answers 0.0 (taken) or the seconds until the collection would fit
(nothing taken), `give_back` returns what a refused collection took, and `status` says for
`/healthz` which store is counting and whether it is failing.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

PLAIN = "-"  # the name under which plain tokens (no tenant) are counted; no tenant can have it


@runtime_checkable
class Limiter(Protocol):
    """A tenant rate limit: `rate` payloads a second with `burst` at once, per tenant."""

    rate: float
    burst: int

    def take(self, tenant: str | None, payloads: int) -> float:
        """0.0 if the tenant's bucket held `payloads` (now taken), else the seconds until it
        will (nothing taken)."""
        ...

    def take_now(self, tenant: str | None, payloads: int) -> float | None:
        """`take` when it can answer without a network round trip, else None (nothing taken):
        an event loop calls this inline and `take` in a thread only when it gets None."""
        ...

    def give_back(self, tenant: str | None, payloads: int) -> None:
        """Return what `take` took for a collection that was refused anyway (503). Never waits
        on the network (the fleet limiter returns what it may not hold from its own thread),
        so an event loop calls it inline."""
        ...

    def status(self) -> dict[str, Any]:
        """For /healthz: the store in force, and whether the fleet store is reachable."""
        ...

    def recheck(self) -> None:
        """Try a failing store again if its backoff has passed, so that /healthz and the
        metrics see it back without tenant traffic (a thread calls it once a second)."""
        ...


class NoLimit:
    """TENANT_RATE=0: every collection is taken; no lock, no file, no Redis round trip."""

    def __init__(self) -> None:
        self.rate = 0.0
        self.burst = 0

    def take(self, tenant: str | None, payloads: int) -> float:
        return 0.0

    take_now = take

    def give_back(self, tenant: str | None, payloads: int) -> None:
        return None

    def status(self) -> dict[str, Any]:
        return {"store": "none", "in_force": "none", "rate": 0.0, "burst": 0}

    def recheck(self) -> None:
        return None


def slot_name(tenant: str | None) -> str:
    """The name a tenant is counted under: plain tokens share one bucket, PLAIN."""
    return PLAIN if tenant is None else tenant
