"""`POST /payloads` under ASGI (granian): the same checks and decisions as the WSGI resource
(`Intake`, `Admission`), with the waiting done by the event loop.

A body that trickles in holds a coroutine, not a thread, and must arrive whole within
BODY_TIMEOUT (else 408 and the connection closed). A body cut short by its client (it went
away before its Content-Length, or before a chunked body's last chunk) is never accepted.
The headers are decided on before the body is awaited (`HeadersFirst`). ACK_MODE=stored
waits on a future resolved by the uploaders, never blocking the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import falcon
import falcon.asgi

from web.admission import Admission, Tracking, skippable
from web.errors import JSONError
from web.intake import CHECKED, Head, HeaderValues, Intake

SWEEP_SECONDS = 0.25


class BodyWatch:
    """A request's `receive` as the app sees it, when the body needs watching.

    Falcon awaits a first body event before it routes a request, and hyper tells a client that
    sent `Expect: 100-continue` to go on as soon as the body is first awaited: so 413 and 401
    decided from the headers would come after the client was told to send the body. For such
    a client (`headers_first`) Falcon gets an empty first event, and the body is awaited only
    when the resource reads it. Falcon's stream also ends a chunked body at a disconnect as if
    it were complete: `complete` says whether the client sent its last chunk.
    """

    __slots__ = ("_headers_first", "_receive", "complete")

    def __init__(self, receive: Any, *, headers_first: bool) -> None:
        self._receive = receive
        self._headers_first = headers_first
        self.complete = False

    async def __call__(self) -> dict[str, Any]:
        if self._headers_first:
            self._headers_first = False
            return {"type": "http.request", "body": b"", "more_body": True}
        event = await self._receive()
        if event["type"] == "http.request" and not event.get("more_body"):
            self.complete = True
        return event


class HeadersFirst:
    """The ASGI app as the server calls it.

    A request with a Content-Length that its headers will not get refused (nearly all) goes
    straight through: Falcon's first read brings its body, and its end is its length. One
    that `Expect: 100-continue`, or that the headers refuse (401, 413, 415), is routed on an
    empty first event, so it is answered before its client sends the body. One without a
    Content-Length (chunked) is watched for its last chunk.
    """

    def __init__(self, app: Any, refused_by: Callable[[HeaderValues], bool]) -> None:
        self._app = app
        self._refused_by = refused_by

    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] == "http":
            headers = scope["headers"]
            if not isinstance(headers, list | tuple):  # iterables read once (falcon.testing)
                headers = scope["headers"] = [(name, value) for name, value in headers]
            values = HeaderValues()
            for name, value in headers:
                if name in CHECKED:
                    setattr(values, CHECKED[name], value)
            expects = values.expect is not None and values.expect.lower() == b"100-continue"
            if expects or values.content_length is None or self._refused_by(values):
                receive = scope["mailroom.body"] = BodyWatch(receive, headers_first=True)
        return self._app(scope, receive, send)


class AsyncPayloadsResource:
    def __init__(self, intake: Intake, admission: Admission, *, body_timeout: float) -> None:
        self._intake = intake
        self._admission = admission
        self._deadlines = BodyDeadlines(body_timeout)

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        admission = self._admission
        admission.check_open()
        head = self._intake.head(req)  # 415, 401, 413: the body unread
        refused = admission.early_refusal(head)
        if refused is not None:
            if skippable(head):
                await self._deadlines.read(req, head.content_length or 0)
            raise refused
        body = await self._deadlines.read(req, self._intake.max_body + 1)
        if len(body) <= self._intake.max_body and not _whole(req, head, body):
            raise JSONError(
                falcon.HTTP_400,
                "incomplete_body",
                "the body ended before it was complete (the client went away); nothing was "
                "accepted",
                headers={"Connection": "close"},
            )
        submission = self._intake.read(head, body)
        if admission.stored_wait is None:
            resp.status = falcon.HTTP_202
            resp.content_type = falcon.MEDIA_JSON
            resp.data = admission.accept(submission)  # the hot path: no media handler
            return
        tracking = admission.track(submission)
        await _stored(tracking, admission.stored_wait)
        resp.media = admission.stored_answer(tracking.outcome())


class BodyDeadlines:
    """BODY_TIMEOUT for every body being read, with one timer for all of them.

    `asyncio.timeout` costs a timer per request (~5 us, and a heap of cancelled timers under
    load); here a request only notes its deadline, and a sweep every SWEEP_SECONDS cancels
    the reads that are late, which then answer 408. So a body gets BODY_TIMEOUT plus at most
    SWEEP_SECONDS."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._reading: dict[asyncio.Task[Any], float] = {}  # task: its deadline (monotonic)
        self._late: set[asyncio.Task[Any]] = set()
        self._sweeping = False

    async def read(self, req: falcon.asgi.Request, limit: int) -> bytes:
        """Up to `limit` bytes of the body, or 408 when it is not all in by the deadline."""
        task = asyncio.current_task()
        assert task is not None
        self._reading[task] = time.monotonic() + self.seconds
        if not self._sweeping:
            self._sweeping = True
            asyncio.get_running_loop().call_later(SWEEP_SECONDS, self._sweep)
        try:
            return await req.stream.read(limit)
        except asyncio.CancelledError:
            if task not in self._late:
                raise  # cancelled by someone else: let it be
            self._late.discard(task)
            task.uncancel()
            raise JSONError(
                falcon.HTTP_408,
                "body_timeout",
                f"the body did not arrive within BODY_TIMEOUT ({self.seconds:g} s); "
                "nothing was accepted",
                headers={"Connection": "close"},
            ) from None
        finally:
            self._reading.pop(task, None)

    def _sweep(self) -> None:
        now = time.monotonic()
        late = [task for task, deadline in self._reading.items() if deadline <= now]
        for task in late:
            del self._reading[task]
            self._late.add(task)
            task.cancel()
        self._sweeping = bool(self._reading)
        if self._sweeping:
            asyncio.get_running_loop().call_later(SWEEP_SECONDS, self._sweep)


def _whole(req: falcon.asgi.Request, head: Head, body: bytes) -> bool:
    """Whether the client sent the whole body: all of its Content-Length (Falcon stops reading
    there), or a chunked body's end."""
    if head.content_length is not None:
        return len(body) == head.content_length
    watch = req.scope.get("mailroom.body")
    return watch is None or watch.complete


async def _stored(tracking: Tracking, timeout: float) -> None:
    """Wait until every payload is in S3 or the spool, or `timeout` passes."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def resolve() -> None:
        if not done.done():
            done.set_result(None)

    def wake() -> None:  # in the thread that settled the last payload
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits any more
            loop.call_soon_threadsafe(resolve)

    tracking.when_done(wake)
    with contextlib.suppress(TimeoutError):  # the answer says what is confirmed and what not
        await asyncio.wait_for(done, timeout)
