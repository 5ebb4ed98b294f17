"""The app factory: routes and error handling, with every collaborator passed in."""

from __future__ import annotations

import threading

import falcon

from config import Settings
from web.errors import handle_unexpected, serialize_error
from web.media import json_handlers
from web.payloads import PayloadsResource, Submitter


def create_app(
    submitter: Submitter, settings: Settings, draining: threading.Event | None = None
) -> falcon.App:
    """Build the WSGI app around a submitter (the actor system's `Dispatcher`).

    `draining` is set at shutdown: from then on every POST is answered 503 and the
    connection closed, so clients go elsewhere while the mailboxes drain.
    """
    app = falcon.App()
    handlers = json_handlers()
    app.req_options.media_handlers.update(handlers)
    app.resp_options.media_handlers.update(handlers)
    app.add_error_handler(Exception, handle_unexpected)
    app.set_error_serializer(serialize_error)
    app.add_route(
        "/payloads",
        PayloadsResource(submitter, settings, draining or threading.Event()),
    )
    return app
