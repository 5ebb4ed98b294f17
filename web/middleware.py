"""The app's one middleware: request id, time in the app, metrics and the access log.

One class for both servers: the WSGI methods and their `_async` twins (Falcon's ASGI app
calls those) do the same plain work. It is the only per-request code outside the resource,
so it is kept to a few dictionary operations: counting goes to an in-process observer,
the access line to a buffered sink.
"""

from __future__ import annotations

from time import perf_counter, time
from typing import Any

import falcon
import falcon.asgi

from web.access_log import AccessRecord, AccessSink
from web.observer import KNOWN_METHODS, HttpObserver
from web.request_id import HEADER, RequestRecord, current_request, request_id


class ObservingMiddleware:
    """Counts and times every answer by method, route and status, and writes its access line.

    The time runs from `process_request` (the headers are in) to `process_response` (the
    answer is set, the body read). `access` None: no access log (ACCESS_LOG=false)."""

    def __init__(self, observer: HttpObserver, access: AccessSink | None) -> None:
        self._finished = observer.request_finished
        self._access = access

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.token = self._start(req, resp)

    async def process_request_async(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response
    ) -> None:
        self._start(req, resp)  # each request is its own task: nothing to reset

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: object, succeeded: bool
    ) -> None:
        size = None
        if self._access is not None and req.method != "HEAD":
            try:
                size = _size(resp.render_body(), resp)
            except Exception:  # a body that cannot be rendered fails later, where Falcon answers
                size = None
        self._finish(req, resp, 0 if req.method == "HEAD" else size)
        token = req.context.get("token")
        if token is not None:  # a WSGI thread serves request after request: forget this one
            current_request.reset(token)

    async def process_response_async(
        self,
        req: falcon.asgi.Request,
        resp: falcon.asgi.Response,
        resource: object,
        succeeded: bool,
    ) -> None:
        size = None
        if self._access is not None and req.method != "HEAD":
            try:
                size = _size(await resp.render_body(), resp)
            except Exception:  # a body that cannot be rendered fails later, where Falcon answers
                size = None
        self._finish(req, resp, 0 if req.method == "HEAD" else size)

    @staticmethod
    def _start(req: Any, resp: Any) -> Any:
        record = RequestRecord(request_id(req.get_header(HEADER)), perf_counter())
        req.context.record = record
        resp.set_header(HEADER, record.request_id)
        return current_request.set(record)

    def _finish(self, req: Any, resp: Any, size: int | None) -> None:
        # No record when Falcon refused the request before any middleware saw it (CONNECT).
        record: RequestRecord | None = req.context.get("record")
        seconds = 0.0 if record is None else perf_counter() - record.started
        status = resp.status_code
        method = req.method
        self._finished(
            method if method in KNOWN_METHODS else "other",
            req.uri_template or "unmatched",
            status,
            seconds,
        )
        if self._access is not None:
            self._access(
                AccessRecord(
                    time(),
                    method,
                    req.path,
                    status,
                    size,
                    seconds,
                    record.request_id if record else "",
                    record.payloads if record else None,
                    record.tenant if record else None,
                )
            )


def _size(body: bytes | None, resp: Any) -> int | None:
    """The size of the body sent: Falcon renders (and keeps) it once; None for a stream."""
    if body is not None:
        return len(body)
    return None if resp.stream is not None else 0


class NotingPayloads:
    """Wraps the observer `POST /payloads` reports to, noting its count on the request's
    record for the access line."""

    def __init__(self, observer: HttpObserver) -> None:
        self._observer = observer
        self.request_finished = observer.request_finished

    def payloads_accepted(self, count: int, tenant: str | None = None) -> None:
        _note(count, tenant)
        self._observer.payloads_accepted(count, tenant)

    def payloads_refused(self, count: int, tenant: str | None = None) -> None:
        _note(count, tenant)
        self._observer.payloads_refused(count, tenant)


def _note(count: int, tenant: str | None) -> None:
    record = current_request.get()
    if record is not None:
        record.payloads, record.tenant = count, tenant
