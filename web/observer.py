"""What the web layer reports about its work (metrics implement it; tests may ignore it)."""

from __future__ import annotations

from typing import Protocol

import falcon


class HttpObserver(Protocol):
    def request_done(self, method: str, route: str, status: int) -> None: ...

    def payloads_accepted(self, count: int) -> None: ...

    def payloads_refused(self, count: int) -> None: ...


class NoHttpObserver:
    def request_done(self, method: str, route: str, status: int) -> None:
        pass

    def payloads_accepted(self, count: int) -> None:
        pass

    def payloads_refused(self, count: int) -> None:
        pass


KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class ObservingMiddleware:
    """Counts every answer by method, route and status. No label takes client input: 404s
    count under one route label (not the path), and made-up methods as `other`."""

    def __init__(self, observer: HttpObserver) -> None:
        self._observer = observer

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: object, succeeded: bool
    ) -> None:
        route = req.uri_template or "unmatched"
        method = req.method if req.method in KNOWN_METHODS else "other"
        self._observer.request_done(method, route, int(resp.status_code))
