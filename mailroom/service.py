"""`mailroom serve` under waitress (SERVER=waitress): one serving process, from settings to a
listening socket and back down.

Shutdown (Heroku sends SIGTERM, then SIGKILL 30 s later; waitress installs no handler): on the
first SIGTERM or SIGINT every new POST is answered 503 with `Connection: close` for a short
grace period, then the listening socket closes, requests in progress finish, the mailboxes
drain to S3, and what cannot be uploaded before SHUTDOWN_TIMEOUT is spooled to disk
(signal handling in `mailroom.signals`).
"""

from __future__ import annotations

import logging
import time

from config import Settings
from mailroom.heap import freeze_start_up
from mailroom.process import build_process, stop_this_process
from mailroom.signals import Stopping
from web.server import closing_connections_when, make_server

log = logging.getLogger("mailroom")


def serve(settings: Settings, worker: int | None = None) -> int:
    """Run until SIGTERM or SIGINT, then drain the mailboxes and stop; return the exit code.

    `worker` is set in the children of a WorkerPool: they share the port (SO_REUSEPORT).
    """
    # A worker of `WEB_CONCURRENCY` uses the embedded store its parent started, if any.
    process = build_process(settings, start_embedded=worker is None, on_exhausted=stop_this_process)
    stopping = Stopping(process.draining)
    try:
        server = make_server(
            closing_connections_when(process.draining, process.app),
            port=settings.port,
            host=settings.host,
            threads=settings.threads,
            channel_timeout=settings.channel_timeout,
            max_body_bytes=settings.max_body_bytes,
            max_connections=settings.max_connections,
            reuse_port=worker is not None,
        )
        stopping.install()
        process.log_start("waitress", "" if worker is None else f"worker {worker}: ")
        freeze_start_up()
        server.run()
        stopping.disarm()
        server.close()
        log.info("stopped taking requests; draining mailboxes", extra={"event": "draining"})
    finally:
        stopping.disarm()
        elapsed = time.monotonic() - (stopping.since or time.monotonic())
        code = process.stop(settings.shutdown_timeout - elapsed)
        process.close_logs()  # waitress answered its last request before the drain
    took = time.monotonic() - (stopping.since or time.monotonic())
    log.info("shut down in %.1fs", took, extra={"event": "stopped", "exit_code": code})
    return code
