"""Every error the service answers is JSON: `{"error": code, "message": text, ...}`."""

from __future__ import annotations

import logging
from typing import Any

import falcon

log = logging.getLogger(__name__)


class JSONError(falcon.HTTPError):
    """An HTTP error whose body names the problem (and the field, for bad input)."""

    def __init__(
        self,
        status: str,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        **details: Any,
    ) -> None:
        super().__init__(status, headers=headers)
        self.body = {"error": code, "message": message, **details}

    def to_dict(self, obj_type: type = dict) -> Any:
        return obj_type(self.body)


def serialize_error(req: falcon.Request, resp: falcon.Response, error: falcon.HTTPError) -> None:
    """Render ours and Falcon's own errors (404, 405, ...) in one JSON shape, always."""
    if isinstance(error, JSONError):
        body = error.body
    else:
        raw = error.to_dict()
        body = {
            "error": error.status.split(" ", 1)[-1].lower().replace(" ", "_"),
            "message": raw.get("description") or raw.get("title", ""),
        }
    resp.content_type = falcon.MEDIA_JSON
    resp.media = body


def handle_unexpected(
    req: falcon.Request, resp: falcon.Response, error: Exception, params: Any
) -> None:
    """A bug: log it with its traceback, answer a JSON 500, keep serving."""
    if isinstance(error, falcon.HTTPError):
        raise error
    log.exception("unhandled error in %s %s", req.method, req.path)
    raise JSONError(falcon.HTTP_500, "internal_error", "the server failed; nothing was accepted")
