"""`mailroom serve` under granian (SERVER=granian, the default): Rust HTTP in front, one
mailroom (actors, S3 client, metrics) in each of `WEB_CONCURRENCY` forked worker processes.

granian does what the hand-made process pool does under waitress: it forks the workers,
respawns one that dies, and on SIGTERM stops accepting, lets requests in progress finish and
then runs each worker's `multiprocessing.util.Finalize` hooks (not `atexit`). mailroom's hook
drains the worker's actors (uploads what is queued, spools what is left at the deadline).
Headers must arrive within HEADER_TIMEOUT, so header tricklers cannot hold connections; the
app is called as soon as the headers are in, so an oversized Content-Length gets its 413
before the body is sent.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing.util
import os
import tempfile
from collections.abc import Callable
from typing import Any

from config import Settings
from mailroom.logs import configure_logging

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
BLOCKING_IDLE_SECONDS = 5  # threads a burst of slow clients made go away soon after it
M_ARENA_MAX = -8  # mallopt's parameter number, from glibc's malloc.h
MALLOC_ARENAS = 2  # glibc gives each thread an arena of its own; hundreds of threads hoard RSS
KILL_MARGIN = 5  # seconds past SHUTDOWN_TIMEOUT before granian kills a worker still draining


def serve_granian(settings: Settings) -> int:
    """The main process: set up what the workers share, then let granian run them."""
    metrics_dir = None
    if not os.environ.get(MULTIPROC_ENV):
        metrics_dir = tempfile.TemporaryDirectory(prefix="mailroom-metrics-")
        os.environ[MULTIPROC_ENV] = metrics_dir.name  # one /metrics for all workers

    from granian import Granian
    from granian.constants import Interfaces
    from granian.http import HTTP1Settings
    from granian.log import LogLevels

    from mailroom.wiring import open_spool, open_store
    from mailroom.workers import share_embedded_store

    open_spool(settings).prepare()  # a SPOOL_DIR that cannot be written: one line, now
    if not settings.uses_embedded_store:
        open_store(settings, start_embedded=False)  # no credentials: one line, exit 1, now
    embedded = share_embedded_store(settings) if settings.uses_embedded_store else None
    log.info(
        "starting granian with %d worker(s) on port %d",
        settings.web_concurrency,
        settings.port,
        extra={"event": "workers_starting", "workers": settings.web_concurrency},
    )
    try:
        Granian(
            "mailroom.granian_server:worker_app",
            factory=True,
            interface=Interfaces.WSGI,
            address=settings.host,
            port=settings.port,
            workers=settings.web_concurrency,
            backlog=settings.backlog,
            backpressure=settings.max_connections,  # connections and requests held at once
            # Each request in the app, or a body still arriving, holds one (WEB_THREADS).
            blocking_threads=min(settings.max_connections, settings.threads),
            blocking_threads_idle_timeout=BLOCKING_IDLE_SECONDS,
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
        if embedded is not None:
            embedded.stop()
        if metrics_dir is not None:
            metrics_dir.cleanup()
    log.info("all workers stopped", extra={"event": "workers_stopped"})
    return 0


def worker_app() -> Callable[..., Any]:
    """granian's factory, run in each forked worker: build this worker's mailroom."""
    from mailroom.metrics import forget_dead_processes
    from mailroom.process import build_process, stop_this_process

    settings = Settings.from_env()  # the main process has checked it already
    configure_logging(settings.log_level, settings.log_format)
    _limit_malloc_arenas()
    forget_dead_processes(os.environ[MULTIPROC_ENV])
    process = build_process(settings, start_embedded=False, on_exhausted=stop_this_process)

    def stop() -> None:
        code = process.stop(settings.shutdown_timeout - 1)
        if code:
            logging.shutdown()
            os._exit(code)  # so granian sees it failed (and respawns it while serving)

    multiprocessing.util.Finalize(None, stop, exitpriority=100)
    process.log_start("granian", f"worker {os.getpid()}: ")
    # No Connection: close wrapper as under waitress: granian refuses new connections at
    # once on SIGTERM, and the drain starts only after its last request has been answered.
    return process.app


def _limit_malloc_arenas() -> None:
    """Cap glibc's per-thread malloc arenas, so memory a burst of threads used is given back."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(M_ARENA_MAX, MALLOC_ARENAS)
    except (OSError, AttributeError):  # not glibc: nothing to tune
        pass
