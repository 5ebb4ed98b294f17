"""The app factory: routes, middleware and error handling, with every collaborator passed in."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import falcon

from config import Settings
from web.errors import handle_unexpected, serialize_error
from web.health import HealthResource
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
    the state behind `/healthz`; `metrics` renders `/metrics`; `observer` counts requests.
    """
    observer = observer or NoHttpObserver()
    app = falcon.App(
        middleware=[
            RequestIdMiddleware(),
            ObservingMiddleware(observer),
            OpsTokenMiddleware(settings.ops_tokens),
        ]
    )
    handlers = json_handlers()
    app.req_options.media_handlers.update(handlers)
    app.resp_options.media_handlers.update(handlers)
    app.add_error_handler(Exception, handle_unexpected)
    app.set_error_serializer(serialize_error)
    draining = draining or threading.Event()
    app.add_route("/payloads", PayloadsResource(submitter, settings, draining, observer))
    app.add_route("/healthz", HealthResource(health or (lambda: {"draining": draining.is_set()})))
    if metrics is not None:
        app.add_route("/metrics", MetricsResource(metrics))
    app.add_route("/openapi.json", OpenAPIResource(settings))
    return app
