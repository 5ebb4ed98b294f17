"""Serving the app with waitress, tuned for many short requests."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any

from waitress.channel import HTTPChannel
from waitress.server import create_server

BACKLOG = 2048
INBUF_OVERFLOW = 65536
MAX_HEADER_BYTES = 16384


class RefusingChannel(HTTPChannel):
    """waitress's channel, but no `100 Continue` for a request it has already refused.

    waitress decides a body is too large from its Content-Length as soon as the headers are
    in, yet still tells an `Expect: 100-continue` client to send it; this channel does not.
    """

    def send_continue(self) -> None:
        if self.request is not None and self.request.error is not None:
            self.request.expect_continue = False
            return
        super().send_continue()


def make_server(
    app: Any,
    *,
    port: int,
    threads: int,
    channel_timeout: int = 30,
    max_body_bytes: int = 1_048_576,
    max_connections: int = 10000,
    host: str = "0.0.0.0",
    reuse_port: bool = False,
) -> Any:
    """A waitress server that queues bursts quietly instead of warning once per request.

    The connection limit and backlog are far above waitress's defaults (100 and 1024) so a
    burst of clients is queued by the kernel or served, never left hanging unanswered. With
    `reuse_port`, several processes listen on the same port and the kernel balances them.
    waitress reads whole requests in its I/O thread before a worker thread sees them, so a
    slow client cannot pin a thread; `channel_timeout` closes connections idle that long.
    Buffers are bounded: a body over `max_body_bytes` is refused by waitress itself (its
    default is 1 GiB), at most 64 KiB of a body is held in memory per connection (the rest
    spills to a temporary file), and headers are capped at 16 KiB.
    """
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    placement: dict[str, Any] = {"host": host, "port": port}
    if reuse_port:
        placement = {"sockets": [_shared_socket(host, port)]}
    server = create_server(
        app,
        threads=threads,
        connection_limit=max_connections,
        backlog=BACKLOG,
        channel_timeout=channel_timeout,
        max_request_body_size=max_body_bytes + 1,  # waitress refuses at >= its limit
        inbuf_overflow=INBUF_OVERFLOW,
        max_request_header_size=MAX_HEADER_BYTES,
        cleanup_interval=max(1, min(10, channel_timeout // 2)),
        asyncore_use_poll=True,
        ident="mailroom",
        # No proxy is trusted and no X-Forwarded-* header is read, so skip waitress's
        # per-request pass over the headers to strip them.
        clear_untrusted_proxy_headers=False,
        **placement,
    )
    server.channel_class = RefusingChannel
    return server


def _shared_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(BACKLOG)
    return sock


def closing_connections_when(
    draining: threading.Event, app: Callable[..., Any]
) -> Callable[..., Any]:
    """While draining, make waitress close each connection after its response.

    PEP 3333 forbids an app to send `Connection: close` itself; waitress sends it and closes
    the connection when an HTTP/1.1 response has no Content-Length, so that is dropped.
    """

    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not draining.is_set():
            return app(environ, start_response)

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            kept = [(name, value) for name, value in headers if name.lower() != "content-length"]
            return start_response(status, kept, exc_info)

        return app(environ, start)

    return wrapped
