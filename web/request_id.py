"""Request ids: honour the caller's X-Request-ID or make one, echo it, put it in the logs."""

from __future__ import annotations

import contextvars
import re
import uuid

import falcon

HEADER = "X-Request-ID"
_ACCEPTABLE = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")

current_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)


class RequestIdMiddleware:
    """A caller's id is kept if it is short and plain; anything else is replaced by a fresh one."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        given = req.get_header(HEADER)
        request_id = given if given and _ACCEPTABLE.fullmatch(given) else uuid.uuid4().hex
        req.context.request_id = request_id
        req.context.request_id_token = current_request_id.set(request_id)
        resp.set_header(HEADER, request_id)

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: object, succeeded: bool
    ) -> None:
        token = getattr(req.context, "request_id_token", None)
        if token is not None:
            current_request_id.reset(token)
