"""What the web layer reports about its work (metrics implement it; tests may ignore it)."""

from __future__ import annotations

from typing import Protocol

KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class HttpObserver(Protocol):
    def request_finished(self, method: str, route: str, status: int, seconds: float) -> None:
        """One answer, by method (`other` for made-up ones), route (`unmatched` for unknown
        paths: no label takes client input) and status, with its time in the app."""

    def payloads_accepted(self, count: int, tenant: str | None = None) -> None: ...

    def payloads_refused(self, count: int, tenant: str | None = None) -> None: ...


class NoHttpObserver:
    def request_finished(self, method: str, route: str, status: int, seconds: float) -> None:
        pass

    def payloads_accepted(self, count: int, tenant: str | None = None) -> None:
        pass

    def payloads_refused(self, count: int, tenant: str | None = None) -> None:
        pass
