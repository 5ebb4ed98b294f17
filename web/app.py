"""The app factories: the same routes, checks and middleware as a WSGI app (waitress) or an
ASGI app (granian), with every collaborator passed in."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import falcon
import falcon.asgi

from config import Settings
from rates import Limiter, limiter_for
from web.access_log import AccessSink
from web.admission import Admission, Submitter
from web.errors import handle_unexpected, serialize_error
from web.health import HealthResource, LivenessResource, Probe, ReadinessResource
from web.intake import Intake
from web.media import json_handlers
from web.middleware import NotingPayloads, ObservingMiddleware
from web.observer import HttpObserver, NoHttpObserver
from web.openapi import OpenAPIResource
from web.ops_auth import OpsGuard
from web.payloads import PayloadsResource
from web.payloads_async import AsyncPayloadsResource, HeadersFirst

MetricsRender = Callable[[], tuple[bytes, str]]


class MetricsResource:
    """`GET /metrics`: Prometheus text, rendered by whoever keeps the metrics."""

    def __init__(self, render: MetricsRender, guard: OpsGuard) -> None:
        self._render = render
        self._guard = guard

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self._guard.check(req)
        resp.data, resp.content_type = self._render()


class AsyncGet:
    """An ASGI face for a GET resource (Falcon's ASGI app wants coroutine responders).

    `offload`: run it in a thread (it reads files: /metrics), so the loop keeps serving."""

    def __init__(self, resource: Any, *, offload: bool = False) -> None:
        self._resource = resource
        self._offload = offload

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        if self._offload:
            await asyncio.get_running_loop().run_in_executor(None, self._resource.on_get, req, resp)
        else:
            self._resource.on_get(req, resp)


@dataclass
class _Parts:
    """What both apps are made of."""

    intake: Intake
    admission: Admission
    middleware: ObservingMiddleware
    guard: OpsGuard
    report: Probe


def _parts(
    submitter: Submitter,
    settings: Settings,
    draining: threading.Event | None,
    health: Probe | None,
    observer: HttpObserver | None,
    access: AccessSink | None,
    rates: Limiter | None,
    *,
    asgi: bool,
) -> _Parts:
    observer = observer or NoHttpObserver()
    draining = draining or threading.Event()
    noting = NotingPayloads(observer) if access is not None else observer
    if rates is None:  # as a serving process makes it (tests build apps without one)
        rates = limiter_for(settings, {})
    return _Parts(
        Intake(settings),
        Admission(
            submitter,
            settings,
            draining,
            noting,
            rates,
            may_close=asgi,
        ),
        ObservingMiddleware(observer, access),
        OpsGuard(settings.ops_tokens),
        health or (lambda: {"draining": draining.is_set()}),
    )


def create_app(
    submitter: Submitter,
    settings: Settings,
    draining: threading.Event | None = None,
    *,
    health: Probe | None = None,
    metrics: MetricsRender | None = None,
    observer: HttpObserver | None = None,
    access: AccessSink | None = None,
    rates: Limiter | None = None,
) -> falcon.App:
    """The WSGI app (waitress), around a submitter (the actor system's `Dispatcher`).

    `draining` is set at shutdown: from then on every POST is answered 503. `health` reports
    the state behind the probes; `metrics` renders `/metrics`; `observer` counts and times
    requests; `access` takes each answer's access line (None: no access log); `rates` is
    TENANT_RATE's limiter (None: one of this process's own).
    """
    parts = _parts(submitter, settings, draining, health, observer, access, rates, asgi=False)
    app = falcon.App(middleware=[parts.middleware])
    _configure(app, handle_unexpected)
    app.add_route("/payloads", PayloadsResource(parts.intake, parts.admission))
    for path, resource in _gets(parts, settings, metrics):
        app.add_route(path, resource)
    return app


def create_asgi_app(
    submitter: Submitter,
    settings: Settings,
    draining: threading.Event | None = None,
    *,
    health: Probe | None = None,
    metrics: MetricsRender | None = None,
    observer: HttpObserver | None = None,
    access: AccessSink | None = None,
    rates: Limiter | None = None,
) -> HeadersFirst:
    """The ASGI app (granian): the same as `create_app`, waiting on the event loop."""
    parts = _parts(submitter, settings, draining, health, observer, access, rates, asgi=True)
    app = falcon.asgi.App(middleware=[parts.middleware])
    _configure(app, _handle_unexpected_async)
    payloads = AsyncPayloadsResource(
        parts.intake,
        parts.admission,
        body_timeout=settings.body_timeout,
        body_memory=settings.body_memory_bytes,
    )
    app.add_route("/payloads", payloads)
    for path, resource in _gets(parts, settings, metrics):
        app.add_route(path, AsyncGet(resource, offload=path == "/metrics"))
    return HeadersFirst(app)


def _configure(app: falcon.App, unexpected: Callable[..., Any]) -> None:
    handlers = json_handlers()
    app.req_options.media_handlers.update(handlers)
    app.resp_options.media_handlers.update(handlers)
    app.add_error_handler(Exception, unexpected)
    app.set_error_serializer(serialize_error)


def _gets(parts: _Parts, settings: Settings, metrics: MetricsRender | None) -> list[tuple]:
    """The GET routes: the probes, /metrics (when something renders it), the OpenAPI document."""
    guard, report = parts.guard, parts.report
    routes: list[tuple[str, Any]] = [
        ("/healthz", HealthResource(report, guard)),
        ("/livez", LivenessResource(report, guard)),
        ("/readyz", ReadinessResource(report, guard)),
    ]
    if metrics is not None:
        routes.append(("/metrics", MetricsResource(metrics, guard)))
    routes.append(("/openapi.json", OpenAPIResource(settings)))
    return routes


async def _handle_unexpected_async(
    req: falcon.asgi.Request, resp: falcon.asgi.Response, error: Exception, params: Any
) -> None:
    handle_unexpected(req, resp, error, params)
