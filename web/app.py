"""The app factory: routes and error handling, with every collaborator passed in."""

from __future__ import annotations

import falcon

from config import Settings
from web.errors import handle_unexpected, serialize_error
from web.media import json_handlers
from web.payloads import PayloadsResource, Submitter


def create_app(submitter: Submitter, settings: Settings) -> falcon.App:
    """Build the WSGI app around a submitter (the actor system's `Dispatcher`)."""
    app = falcon.App()
    handlers = json_handlers()
    app.req_options.media_handlers.update(handlers)
    app.resp_options.media_handlers.update(handlers)
    app.add_error_handler(Exception, handle_unexpected)
    app.set_error_serializer(serialize_error)
    app.add_route(
        "/payloads",
        PayloadsResource(
            submitter,
            max_body_bytes=settings.max_body_bytes,
            max_payloads=settings.max_payloads_per_request,
            retry_after=settings.retry_after_seconds,
        ),
    )
    return app
