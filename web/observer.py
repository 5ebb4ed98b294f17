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


class ObservingMiddleware:
    """Counts every answer by route and status (404s under one route label, not the path)."""

    def __init__(self, observer: HttpObserver) -> None:
        self._observer = observer

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: object, succeeded: bool
    ) -> None:
        route = req.uri_template or "unmatched"
        self._observer.request_done(req.method, route, int(resp.status_code))
