"""`POST /payloads`: accept a collection whole into the uploaders' mailboxes, or refuse it whole."""

from __future__ import annotations

import logging
import threading
from typing import Any, Protocol

import falcon

from actors import Outcome, Refused
from config import Settings
from web.errors import JSONError
from web.intake import Intake
from web.limits import TenantRates, retry_after
from web.observer import HttpObserver

log = logging.getLogger(__name__)
SKIP_BODY_BYTES = 65536  # an early refusal reads and drops a body up to this size


class Submitter(Protocol):
    """The actor system as the web layer sees it (an `actors.Dispatcher`)."""

    def refusal(self) -> str | None: ...

    def submit(
        self,
        version: str,
        documents: list[Any],
        tenant: str | None = None,
        idempotency_key: str | None = None,
    ) -> int: ...

    def submit_and_wait(
        self,
        version: str,
        documents: list[Any],
        wait: float,
        tenant: str | None = None,
        idempotency_key: str | None = None,
    ) -> Outcome: ...


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
        self._intake = Intake(settings)
        self._rates = TenantRates(settings.tenant_rate, settings.burst)
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
        media_type = self._intake.media_type(req)
        client = self._intake.header_client(req, media_type)  # a bad token: 401, body unread
        refusal = self._submitter.refusal()
        if refusal is not None:  # plainly full: refused before the body is parsed
            log.debug("refused a collection before reading it: %s", refusal)
            raise self._overloaded(refusal, unread=self._skip_body(req))
        submission = self._intake.read(req, media_type, client)
        tenant, count = submission.client.tenant, len(submission.data)
        # Idempotency-Keys are the client's own: two clients' "order-1" are different keys.
        key = submission.idempotency_key
        scoped_key = f"{submission.client.scope}\n{key}" if key is not None else None
        wait = self._rates.take(tenant, count)
        if wait:
            self._observer.payloads_refused(count, tenant)
            raise self._too_many(
                tenant, f"over TENANT_RATE ({self._rates.rate:g} payloads/s)", wait
            )
        try:
            if self._wait_stored is None:
                accepted = self._submitter.submit(
                    submission.version, submission.data, tenant, scoped_key
                )
                self._observer.payloads_accepted(accepted, tenant)
                resp.status = falcon.HTTP_202
                resp.content_type = falcon.MEDIA_JSON
                resp.data = b'{"accepted":%d}' % accepted  # the hot path: no media handler
            else:
                outcome = self._submitter.submit_and_wait(
                    submission.version,
                    submission.data,
                    self._wait_stored,
                    tenant,
                    scoped_key,
                )
                self._observer.payloads_accepted(outcome.accepted, tenant)
                self._answer_stored(resp, outcome)
        except Refused as refused:
            self._rates.give_back(tenant, count)  # refused: it used none of the rate
            log.debug("refused a collection of %d: %s", count, refused)
            self._observer.payloads_refused(count, tenant)
            if refused.tenant_limited:
                share = "holding its whole share of the mailboxes (TENANT_SHARE)"
                raise self._too_many(tenant, share, 1.0) from None
            raise self._overloaded(refused.reason) from None

    def _overloaded(self, reason: str, *, unread: bool = False) -> JSONError:
        headers = {"Retry-After": self._retry_after}
        if unread:  # the body is still on the wire: the connection cannot carry another request
            headers["Connection"] = "close"
        return JSONError(
            falcon.HTTP_503,
            "overloaded",
            f"collection refused, none of it was accepted: {reason}; retry later",
            headers=headers,
        )

    @staticmethod
    def _skip_body(req: falcon.Request) -> bool:
        """Read and drop a small body, so the kept-alive connection can carry the next
        request (reading costs little; parsing is what the early refusal saves). Returns
        True when the body was left unread (large, or chunked)."""
        length = req.content_length
        if length is None or length > SKIP_BODY_BYTES:
            return True
        req.bounded_stream.read(length)
        return False

    def _too_many(self, tenant: str | None, why: str, seconds: float) -> JSONError:
        who = f"tenant {tenant}" if tenant else "this client"
        return JSONError(
            falcon.HTTP_429,
            "too_many_requests",
            f"collection refused, none of it was accepted: {who} is {why}; retry after "
            f"{retry_after(seconds)} s",
            headers={"Retry-After": retry_after(max(seconds, float(self._retry_after)))},
        )

    def _answer_stored(self, resp: falcon.Response, outcome: Outcome) -> None:
        """ACK_MODE=stored: 200 only when every payload is in S3."""
        if outcome.all_landed:
            resp.status = falcon.HTTP_200
            resp.media = {
                "accepted": outcome.accepted,
                "stored": outcome.landed,
                # Where each payload is, in the order sent: its object, and its line there
                # when the object is a batch. A client can prove where every payload went.
                "receipts": [
                    {"key": where[0], "line": where[1]} if where else None
                    for where in outcome.locations
                ],
                # Every payload was already stored under its key (a resent collection with
                # the same Idempotency-Key): nothing was written twice.
                "repeat": outcome.existed == outcome.accepted,
            }
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
