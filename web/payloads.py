"""`POST /payloads`: accept a collection whole into the uploaders' mailboxes, or refuse it whole."""

from __future__ import annotations

import logging
import threading
from typing import Any, Protocol

import falcon

from actors import Outcome, Refused
from config import Settings
from web.auth import TokenCheck
from web.collection import InvalidCollection, parse_collection
from web.errors import JSONError
from web.observer import HttpObserver

log = logging.getLogger(__name__)

JSON_TYPES = ("application/json",)


class Submitter(Protocol):
    """The actor system as the web layer sees it (an `actors.Dispatcher`)."""

    def refusal(self) -> str | None: ...

    def submit(self, version: str, documents: list[Any]) -> int: ...

    def submit_and_wait(self, version: str, documents: list[Any], wait: float) -> Outcome: ...


class PayloadsResource:
    def __init__(
        self,
        submitter: Submitter,
        settings: Settings,
        draining: threading.Event,
        observer: HttpObserver,
    ) -> None:
        self._submitter = submitter
        self._draining = draining
        self._observer = observer
        self._tokens = TokenCheck(settings.ingest_tokens)
        self._max_body = settings.max_body_bytes
        self._max_payloads = settings.max_payloads_per_request
        self._retry_after = str(settings.retry_after_seconds)
        self._wait_stored = settings.stored_ack_timeout if settings.ack_mode == "stored" else None

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        if self._draining.is_set():
            raise JSONError(
                falcon.HTTP_503,
                "shutting_down",
                "this instance is shutting down; nothing was accepted; send it again",
                headers={"Retry-After": self._retry_after},
            )
        media_type = (req.content_type or "").split(";", 1)[0].strip().lower()
        if media_type not in JSON_TYPES:
            raise JSONError(
                falcon.HTTP_415,
                "unsupported_media_type",
                f"Content-Type must be application/json, not {media_type or 'missing'}",
            )
        refusal = self._submitter.refusal()
        if refusal is not None:  # plainly full: refused before the body is read or parsed
            log.debug("refused a collection before reading it: %s", refusal)
            raise self._overloaded(refusal)
        body = self._read_body(req)
        try:
            collection = parse_collection(body, max_payloads=self._max_payloads)
        except InvalidCollection as error:
            raise JSONError(
                falcon.HTTP_400, "invalid_collection", str(error), field=error.field
            ) from None
        if not self._tokens.accepts(collection.token):
            log.debug("refused a collection: its token is not accepted")
            raise JSONError(falcon.HTTP_401, "unauthorized", "token: not accepted")
        try:
            if self._wait_stored is None:
                accepted = self._submitter.submit(collection.version, collection.data)
                self._observer.payloads_accepted(accepted)
                resp.status = falcon.HTTP_202
                resp.content_type = falcon.MEDIA_JSON
                resp.data = b'{"accepted":%d}' % accepted  # the hot path: no media handler
            else:
                outcome = self._submitter.submit_and_wait(
                    collection.version, collection.data, self._wait_stored
                )
                self._observer.payloads_accepted(outcome.accepted)
                self._answer_stored(resp, outcome)
        except Refused as refused:
            log.debug("refused a collection of %d: %s", len(collection.data), refused)
            self._observer.payloads_refused(len(collection.data))
            raise self._overloaded(refused.reason) from None

    def _overloaded(self, reason: str) -> JSONError:
        return JSONError(
            falcon.HTTP_503,
            "overloaded",
            f"collection refused, none of it was accepted: {reason}; retry later",
            headers={"Retry-After": self._retry_after},
        )

    def _answer_stored(self, resp: falcon.Response, outcome: Outcome) -> None:
        """ACK_MODE=stored: 200 only when every payload is in S3."""
        if outcome.all_landed:
            resp.status = falcon.HTTP_200
            resp.media = {"accepted": outcome.accepted, "stored": outcome.landed}
            return
        raise JSONError(
            falcon.HTTP_503,
            "not_confirmed",
            f"all {outcome.accepted} payloads were accepted, but after {self._wait_stored:g}s "
            f"only {outcome.landed} are confirmed in S3 and {outcome.spooled} are durably in "
            f"the dead-letter spool (replayed later); {outcome.pending} are still held in "
            "memory and being retried, not yet durable. Do not resend: they were accepted.",
            accepted=outcome.accepted,
            stored=outcome.landed,
            spooled=outcome.spooled,
            pending=outcome.pending,
        )

    def _read_body(self, req: falcon.Request) -> bytes:
        """Refuse an oversized body from its Content-Length, before reading a byte of it."""
        length = req.content_length
        if length is not None and length > self._max_body:
            raise JSONError(
                falcon.HTTP_413,
                "body_too_large",
                f"body is {length} bytes; at most {self._max_body}",
            )
        # Without a Content-Length (a chunked body) only the raw stream knows where it ends;
        # reading one byte past the limit is enough to refuse it.
        stream = req.bounded_stream if length is not None else req.stream
        body = stream.read(self._max_body + 1)
        if len(body) > self._max_body:
            raise JSONError(
                falcon.HTTP_413, "body_too_large", f"body exceeds {self._max_body} bytes"
            )
        return body
