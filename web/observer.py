"""What the web layer reports about its work (metrics implement it; tests may ignore it)."""

from __future__ import annotations

from collections.abc import Callable
from time import perf_counter
from typing import Protocol

import falcon


class HttpObserver(Protocol):
    def request_done(self, method: str, route: str, status: int) -> None: ...

    def payloads_accepted(self, count: int, tenant: str | None = None) -> None: ...

    def payloads_refused(self, count: int, tenant: str | None = None) -> None: ...


class TimedHttpObserver(HttpObserver, Protocol):
    """An observer that also takes each request's duration (the latency histogram). An
    observer without `request_finished` is told `request_done` instead."""

    def request_finished(self, method: str, route: str, status: int, seconds: float) -> None: ...


class NoHttpObserver:
    def request_done(self, method: str, route: str, status: int) -> None:
        pass

    def request_finished(self, method: str, route: str, status: int, seconds: float) -> None:
        pass

    def payloads_accepted(self, count: int, tenant: str | None = None) -> None:
        pass

    def payloads_refused(self, count: int, tenant: str | None = None) -> None:
        pass


KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class ObservingMiddleware:
    """Counts and times every answer by method, route and status. No label takes client input:
    404s count under one route label (not the path), and made-up methods as `other`.

    The time runs from this middleware's `process_request` (the headers are in) to its
    `process_response` (the answer is set, the body read); it is left in
    `req.context.duration` (seconds) for the access log.
    """

    def __init__(self, observer: HttpObserver) -> None:
        finished = getattr(observer, "request_finished", None)
        if finished is None:
            done = observer.request_done

            def finished(method: str, route: str, status: int, seconds: float) -> None:
                done(method, route, status)

        self._finished: Callable[[str, str, int, float], None] = finished

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.started = perf_counter()

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: object, succeeded: bool
    ) -> None:
        context = req.context
        # No start when Falcon refused the request before any middleware saw it (CONNECT).
        started = context.get("started")
        seconds = context.duration = 0.0 if started is None else perf_counter() - started
        route = req.uri_template or "unmatched"
        method = req.method if req.method in KNOWN_METHODS else "other"
        self._finished(method, route, int(resp.status_code), seconds)
