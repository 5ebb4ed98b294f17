"""`POST /payloads`: accept a collection whole into the uploaders' mailboxes, or refuse it whole."""

from __future__ import annotations

from typing import Any, Protocol

import falcon

from actors import Refused
from web.collection import InvalidCollection, parse_collection
from web.errors import JSONError

JSON_TYPES = ("application/json",)


class Submitter(Protocol):
    """The actor system as the web layer sees it (an `actors.Dispatcher`)."""

    def submit(self, version: str, documents: list[Any]) -> int: ...


class PayloadsResource:
    def __init__(
        self,
        submitter: Submitter,
        *,
        max_body_bytes: int,
        max_payloads: int,
        retry_after: int,
    ) -> None:
        self._submitter = submitter
        self._max_body = max_body_bytes
        self._max_payloads = max_payloads
        self._retry_after = retry_after

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        media_type = (req.content_type or "").split(";", 1)[0].strip().lower()
        if media_type not in JSON_TYPES:
            raise JSONError(
                falcon.HTTP_415,
                "unsupported_media_type",
                f"Content-Type must be application/json, not {media_type or 'missing'}",
            )
        body = self._read_body(req)
        try:
            collection = parse_collection(body, max_payloads=self._max_payloads)
        except InvalidCollection as error:
            raise JSONError(
                falcon.HTTP_400, "invalid_collection", str(error), field=error.field
            ) from None
        try:
            accepted = self._submitter.submit(collection.version, collection.data)
        except Refused as refusal:
            raise JSONError(
                falcon.HTTP_503,
                "overloaded",
                f"collection refused, none of it was accepted: {refusal}; retry later",
                headers={"Retry-After": str(self._retry_after)},
            ) from None
        resp.status = falcon.HTTP_202
        resp.media = {"accepted": accepted}

    def _read_body(self, req: falcon.Request) -> bytes:
        """Refuse an oversized body from its Content-Length, before reading a byte of it."""
        length = req.content_length
        if length is not None and length > self._max_body:
            raise JSONError(
                falcon.HTTP_413,
                "body_too_large",
                f"body is {length} bytes; at most {self._max_body}",
            )
        body = req.bounded_stream.read(self._max_body + 1)
        if len(body) > self._max_body:
            raise JSONError(
                falcon.HTTP_413, "body_too_large", f"body exceeds {self._max_body} bytes"
            )
        return body
