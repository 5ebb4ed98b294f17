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
from typing import Any

import falcon
import falcon.asgi

from rates import Limiter
from web.admission import Admission, Tracking, skippable
from web.body_memory import BodyMemory
from web.errors import JSONError
from web.intake import Head, Intake

SWEEP_SECONDS = 0.25


class BodyWatch:
    """A request's `receive` as the app sees it: the headers first, and the body's real end.

    Falcon awaits a first body event before it routes a request: a client that sent only its
    headers would hold it there with no deadline, and hyper tells an `Expect: 100-continue`
    client to send its body as soon as it is awaited, before the app could answer 401 or 413
    from the headers. So Falcon gets an empty first event, and the body is awaited only when
    the resource reads it, within BODY_TIMEOUT (`BodyDeadlines`). Falcon's stream also ends a
    chunked body at a disconnect as if it were complete: `complete` says whether the client
    sent its last chunk.
    """

    __slots__ = ("_receive", "_started", "complete")

    def __init__(self, receive: Any) -> None:
        self._receive = receive
        self._started = False
        self.complete = False

    async def __call__(self) -> dict[str, Any]:
        if not self._started:
            self._started = True
            return {"type": "http.request", "body": b"", "more_body": True}
        event = await self._receive()
        if event["type"] == "http.request" and not event.get("more_body"):
            self.complete = True
        return event


class HeadersFirst:
    """The ASGI app as the server calls it: each HTTP request's `receive` is a `BodyWatch`,
    kept in the scope for the resource to ask."""

    def __init__(self, app: Any) -> None:
        self._app = app

    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] == "http":
            receive = scope["mailroom.body"] = BodyWatch(receive)
            if scope["http_version"] == "1":  # granian's name for HTTP/1.0, which Falcon
                scope["http_version"] = "1.0"  # refuses (a 500 to every nginx default)
        return self._app(scope, receive, send)


class AsyncPayloadsResource:
    def __init__(
        self, intake: Intake, admission: Admission, *, body_timeout: float, body_memory: int
    ) -> None:
        self._intake = intake
        self._admission = admission
        self._deadlines = BodyDeadlines(body_timeout)
        self._memory = BodyMemory(body_memory)

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        admission = self._admission
        head, refused = admission.before_body(self._intake, req)
        if refused is not None:
            if skippable(head):
                await self._deadlines.read(req, head.content_length or 0)
            raise refused
        size = self._intake.max_body + 1 if head.content_length is None else head.content_length
        if not self._memory.reserve(size):
            raise admission.overloaded(
                f"this worker holds BODY_MEMORY_BYTES ({self._memory.limit}) of bodies being read",
                unread=True,
            )
        try:
            await self._accept(req, resp, head)
        finally:
            self._memory.release(size)

    async def _accept(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, head: Head
    ) -> None:
        admission = self._admission
        body = await self._deadlines.read(req, self._intake.max_body + 1)
        if len(body) <= self._intake.max_body and not _whole(req, head, body):
            raise JSONError(
                falcon.HTTP_400,
                "incomplete_body",
                "the body ended before it was complete (the client went away, or its chunked "
                "framing was broken); nothing was accepted",
                headers={"Connection": "close"},
            )
        submission = self._intake.read(head, body)
        wait = await _rate(admission.rates, submission.client.tenant, len(submission.data))
        if admission.stored_wait is None:
            admission.accepted(resp, submission, wait)
            return
        tracking = admission.track(submission, wait)
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


async def _rate(rates: Limiter, tenant: str | None, payloads: int) -> float:
    """The tenant's rate decision: inline when it needs no round trip (nearly always), else
    in a thread, so a slow rate store never stalls the loop."""
    wait = rates.take_now(tenant, payloads)
    if wait is None:
        wait = await asyncio.get_running_loop().run_in_executor(None, rates.take, tenant, payloads)
    return wait


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
