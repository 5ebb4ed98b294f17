"""`mailroom serve` under granian (SERVER=granian, the default): Rust HTTP in front, one
mailroom (actors, S3 client, metrics) behind Falcon's ASGI app in each of `WEB_CONCURRENCY`
forked worker processes (mailroom.granian_worker).

granian does what the hand-made process pool does under waitress: it forks the workers,
respawns one that dies, and passes SIGTERM on to each. Headers must arrive within
HEADER_TIMEOUT, so header tricklers cannot hold connections; the app is called as soon as the
headers are in, so an oversized Content-Length gets its 413 before the body is sent, and a
body must arrive whole within BODY_TIMEOUT. One event loop per worker serves every
connection: a slow body holds a coroutine, not a thread.
"""

from __future__ import annotations

import logging
import os
import tempfile

from config import Settings

# Not imported from mailroom.metrics: prometheus_client picks its value store when first
# imported, so the variable must be set before any process of the tree imports it.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

log = logging.getLogger("mailroom")

# granian's own lines (workers spawned, respawned, stopped) go through mailroom's handler.
GRANIAN_LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {
        "_granian": {"handlers": [], "propagate": True},
        "granian.access": {"handlers": [], "propagate": True},
    },
}
HTTP1_BUFFER = 65536  # per connection at most (granian: 408 KiB, times thousands of slow ones)
KILL_MARGIN = 5  # seconds past SHUTDOWN_TIMEOUT before granian kills a worker still draining


def serve_granian(settings: Settings) -> int:
    """The main process: set up what the workers share, then let granian run them."""
    metrics_dir = None
    if not os.environ.get(MULTIPROC_ENV):
        metrics_dir = tempfile.TemporaryDirectory(prefix="mailroom-metrics-")
        os.environ[MULTIPROC_ENV] = metrics_dir.name  # one /metrics for all workers

    from granian import Granian
    from granian.constants import HTTPModes, Interfaces, Loops
    from granian.http import HTTP1Settings
    from granian.log import LogLevels

    from mailroom.granian_worker import listen_from_the_fork
    from mailroom.wiring import open_spool, open_store
    from mailroom.workers import share_embedded_store
    from rates import check_rate_store, prepare_box

    open_spool(settings).prepare()  # a SPOOL_DIR that cannot be written: one line, now
    if not settings.uses_embedded_store:
        open_store(settings, start_embedded=False)  # no credentials: one line, exit 2, now
    embedded = share_embedded_store(settings) if settings.uses_embedded_store else None
    box = prepare_box(settings)  # the workers' shared tenant buckets (TENANT_RATE), per box
    os.environ.update(box.env)
    unreachable = check_rate_store(settings)
    if unreachable:
        log.warning(
            "%s: tenant limits follow RATE_STORE_FAILURE=%s until it does",
            unreachable,
            settings.rate_store_failure,
            extra={"event": "rate_store_unreachable"},
        )
    listen_from_the_fork()  # each worker hears a stop signal from its first instant
    log.info(
        "starting granian with %d worker(s) on port %d",
        settings.web_concurrency,
        settings.port,
        extra={"event": "workers_starting", "workers": settings.web_concurrency},
    )
    try:
        Granian(
            "mailroom.granian_worker:worker_app",
            factory=True,
            interface=Interfaces.ASGI,
            # uvloop, named rather than granian's `auto` (which prefers rloop if present):
            # measured against asyncio and rloop, the most requests for the least CPU.
            loop=Loops.uvloop,
            # HTTP/1.1 only. granian's default (auto) also speaks cleartext HTTP/2, where a
            # stream its client reset after the body was taken for a whole body, and where
            # connections that never send a byte are never closed (HEADER_TIMEOUT is HTTP/1's).
            http=HTTPModes.http1,
            address=settings.host,
            port=settings.port,
            workers=settings.web_concurrency,
            backlog=settings.backlog,
            backpressure=settings.max_connections,  # connections held at once, per worker
            http1_settings=HTTP1Settings(
                header_read_timeout=int(settings.header_timeout * 1000),
                keep_alive=True,
                max_buffer_size=HTTP1_BUFFER,
            ),
            workers_kill_timeout=int(settings.shutdown_timeout) + KILL_MARGIN,
            respawn_failed_workers=True,
            log_enabled=True,
            log_level=LogLevels(settings.log_level.lower()),
            log_access=False,
            log_dictconfig=GRANIAN_LOGGING,
        ).serve()
    finally:
        box.cleanup()
        if embedded is not None:
            embedded.stop()
        if metrics_dir is not None:
            metrics_dir.cleanup()
    log.info("all workers stopped", extra={"event": "workers_stopped"})
    return 0
