"""Deciding a collection's fate once its checks passed: accepted whole, or refused whole.

Written once, on plain data, for both servers: the WSGI resource (waitress) and the ASGI one
(granian) call the same methods and differ only in how they wait (for the body, and in
ACK_MODE=stored for S3). Every refusal is a JSONError saying that none of it was accepted.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol

import falcon

from actors import Outcome, Refused
from config import Settings
from rates import Limiter
from web.errors import JSONError
from web.intake import Head, Intake, Submission
from web.limits import retry_after
from web.observer import HttpObserver

log = logging.getLogger("web.payloads")


class Tracking(Protocol):
    """An accepted collection whose storage the caller follows (ACK_MODE=stored)."""

    accepted: int

    def wait(self, timeout: float) -> bool: ...

    def when_done(self, callback: Callable[[], None]) -> None: ...

    def outcome(self) -> Outcome: ...


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

    def track(
        self,
        version: str,
        documents: list[Any],
        tenant: str | None = None,
        idempotency_key: str | None = None,
    ) -> Tracking: ...


class Admission:
    """The decisions of `POST /payloads` that come before and after reading the body."""

    def __init__(
        self,
        submitter: Submitter,
        settings: Settings,
        draining: threading.Event,
        observer: HttpObserver,
        rates: Limiter,
        *,
        may_close: bool,
    ) -> None:
        """`rates` is TENANT_RATE's limiter (per process, box or fleet: the `rates` package).
        `may_close`: the server lets the app close a connection with `Connection: close`
        (granian does; under WSGI it is a hop-by-hop header waitress forbids, and waitress
        has read the whole body before the app runs anyway)."""
        self._submitter = submitter
        self._may_close = may_close
        self._draining = draining
        self._observer = observer
        self.rates = rates
        self._retry_after = str(settings.retry_after_seconds)
        self.stored_wait = settings.stored_ack_timeout if settings.ack_mode == "stored" else None

    def before_body(self, intake: Intake, req: Any) -> tuple[Head, JSONError | None]:
        """Everything decided before the body is read: draining (503), the headers (415,
        401, 413: `intake.head`), and whether the mailboxes are plainly full (the refusal to
        raise once a small body is read and dropped; see `early_refusal`)."""
        self.check_open()
        head = intake.head(req)
        return head, self.early_refusal(head)

    def accepted(self, resp: Any, submission: Submission, wait: float) -> None:
        """ACK_MODE=queued: admit the collection and answer 202 (the hot path: the body's bytes
        set at once, no media handler)."""
        resp.status = falcon.HTTP_202
        resp.content_type = falcon.MEDIA_JSON
        resp.data = self.accept(submission, wait)

    def check_open(self) -> None:
        """Draining: nothing more is accepted here (the client goes to another instance)."""
        if self._draining.is_set():
            raise JSONError(
                falcon.HTTP_503,
                "shutting_down",
                "this instance is shutting down; nothing was accepted; send it again",
                headers=self._closing({"Retry-After": self._retry_after}),
            )

    def early_refusal(self, head: Head) -> JSONError | None:
        """Plainly full: refused before the body is read (parsing is most of what that saves).

        The caller reads and drops a small body (`skippable`), so the kept-alive connection can
        carry the next request; otherwise the error closes the connection."""
        refusal = self._submitter.refusal()
        if refusal is None:
            return None
        log.debug("refused a collection before reading it: %s", refusal)
        return self.overloaded(refusal, unread=not skippable(head))

    def accept(self, submission: Submission, wait: float) -> bytes:
        """Admit the collection (ACK_MODE=queued); the 202's body. `wait` is what the tenant's
        rate limiter answered for it (0.0: taken)."""
        tenant, count = self._rate_decided(submission, wait)
        try:
            accepted = self._submitter.submit(
                submission.version, submission.data, tenant, _scoped_key(submission)
            )
        except Refused as refused:
            raise self._refused(refused, tenant, count) from None
        self._observer.payloads_accepted(accepted, tenant)
        return b'{"accepted":%d}' % accepted

    def track(self, submission: Submission, wait: float) -> Tracking:
        """Admit the collection and follow it into S3 (ACK_MODE=stored)."""
        tenant, count = self._rate_decided(submission, wait)
        try:
            tracking = self._submitter.track(
                submission.version, submission.data, tenant, _scoped_key(submission)
            )
        except Refused as refused:
            raise self._refused(refused, tenant, count) from None
        self._observer.payloads_accepted(tracking.accepted, tenant)
        return tracking

    def stored_answer(self, outcome: Outcome) -> dict[str, Any]:
        """ACK_MODE=stored: the 200's body when every payload is in S3; else a 503 saying
        where each one is (accepted all the same: the client must not resend)."""
        if outcome.all_landed:
            return {
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
        raise JSONError(
            falcon.HTTP_503,
            "not_confirmed",
            f"all {outcome.accepted} payloads were accepted, but after {self.stored_wait:g}s "
            f"only {outcome.landed} are confirmed in S3 and {outcome.spooled} are durably in "
            f"the dead-letter spool (replayed later); {outcome.pending} are still held in "
            "memory and being retried, not yet durable. Do not resend: they were accepted.",
            accepted=outcome.accepted,
            stored=outcome.landed,
            spooled=outcome.spooled,
            pending=outcome.pending,
        )

    def _rate_decided(self, submission: Submission, wait: float) -> tuple[str | None, int]:
        tenant, count = submission.client.tenant, len(submission.data)
        if wait:
            self._observer.payloads_refused(count, tenant)
            raise self._too_many(tenant, f"over TENANT_RATE ({self.rates.rate:g} payloads/s)", wait)
        return tenant, count

    def _refused(self, refused: Refused, tenant: str | None, count: int) -> JSONError:
        self.rates.give_back(tenant, count)  # refused: it used none of the rate
        log.debug("refused a collection of %d: %s", count, refused)
        self._observer.payloads_refused(count, tenant)
        if refused.tenant_limited:
            share = "holding its whole share of the mailboxes (TENANT_SHARE)"
            return self._too_many(tenant, share, 1.0)
        return self.overloaded(refused.reason)

    def overloaded(self, reason: str, *, unread: bool = False) -> JSONError:
        """503: none of it accepted, retry later (the connection closed if its body is
        still on the wire and the server lets the app close it)."""
        headers = {"Retry-After": self._retry_after}
        if unread:  # the body is still on the wire: the connection cannot carry another request
            headers = self._closing(headers)
        return JSONError(
            falcon.HTTP_503,
            "overloaded",
            f"collection refused, none of it was accepted: {reason}; retry later",
            headers=headers,
        )

    def _closing(self, headers: dict[str, str]) -> dict[str, str]:
        return {**headers, "Connection": "close"} if self._may_close else headers

    def _too_many(self, tenant: str | None, why: str, seconds: float) -> JSONError:
        who = f"tenant {tenant}" if tenant else "this client"
        return JSONError(
            falcon.HTTP_429,
            "too_many_requests",
            f"collection refused, none of it was accepted: {who} is {why}; retry after "
            f"{retry_after(seconds)} s",
            headers={"Retry-After": retry_after(max(seconds, float(self._retry_after)))},
        )


SKIP_BODY_BYTES = 65536  # an early refusal reads and drops a body up to this size


def skippable(head: Head) -> bool:
    """A body small enough to read and drop, so that its connection stays usable."""
    return head.content_length is not None and head.content_length <= SKIP_BODY_BYTES


def _scoped_key(submission: Submission) -> str | None:
    """Idempotency-Keys are the client's own: two clients' "order-1" are different keys."""
    key = submission.idempotency_key
    return f"{submission.client.scope}\n{key}" if key is not None else None
