"""The app factory: routes, middleware and error handling, with every collaborator passed in."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import falcon

from config import Settings
from web.access_log import AccessLogMiddleware, NotingPayloads
from web.errors import handle_unexpected, serialize_error
from web.health import HealthResource, LivenessResource, ReadinessResource
from web.media import json_handlers
from web.observer import HttpObserver, NoHttpObserver, ObservingMiddleware
from web.openapi import OpenAPIResource
from web.ops_auth import OpsTokenMiddleware
from web.payloads import PayloadsResource, Submitter
from web.request_id import RequestIdMiddleware

MetricsRender = Callable[[], tuple[bytes, str]]


class MetricsResource:
    """`GET /metrics`: Prometheus text, rendered by whoever keeps the metrics."""

    def __init__(self, render: MetricsRender) -> None:
        self._render = render

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.data, resp.content_type = self._render()


def create_app(
    submitter: Submitter,
    settings: Settings,
    draining: threading.Event | None = None,
    *,
    health: Callable[[], dict[str, Any]] | None = None,
    metrics: MetricsRender | None = None,
    observer: HttpObserver | None = None,
) -> falcon.App:
    """Build the WSGI app around a submitter (the actor system's `Dispatcher`).

    `draining` is set at shutdown: from then on every POST is answered 503 and the
    connection closed, so clients go elsewhere while the mailboxes drain. `health` reports
    the state behind `/healthz`; `metrics` renders `/metrics`; `observer` counts and times
    requests. With `settings.access_log` every answer is logged on `mailroom.access`.
    """
    observer = observer or NoHttpObserver()
    payloads_observer: HttpObserver = observer
    middleware: list[object] = [RequestIdMiddleware()]
    if settings.access_log:
        # Listed before the observing middleware, so that its process_response runs after
        # that one's (Falcon goes in reverse) and finds the request's duration.
        middleware.append(AccessLogMiddleware())
        payloads_observer = NotingPayloads(observer)
    middleware += [ObservingMiddleware(observer), OpsTokenMiddleware(settings.ops_tokens)]
    app = falcon.App(middleware=middleware)
    handlers = json_handlers()
    app.req_options.media_handlers.update(handlers)
    app.resp_options.media_handlers.update(handlers)
    app.add_error_handler(Exception, handle_unexpected)
    app.set_error_serializer(serialize_error)
    draining = draining or threading.Event()
    app.add_route("/payloads", PayloadsResource(submitter, settings, draining, payloads_observer))
    report = health or (lambda: {"draining": draining.is_set()})
    app.add_route("/healthz", HealthResource(report))
    app.add_route("/livez", LivenessResource(report))
    app.add_route("/readyz", ReadinessResource(report))
    if metrics is not None:
        app.add_route("/metrics", MetricsResource(metrics))
    app.add_route("/openapi.json", OpenAPIResource(settings))
    return app
