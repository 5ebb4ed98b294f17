"""`mailroom serve`: one serving process, from settings to a listening socket and back down.

Shutdown (Heroku sends SIGTERM, then SIGKILL 30 s later; waitress installs no handler): on the
first SIGTERM or SIGINT every new POST is answered 503 with `Connection: close` for a short
grace period, then the listening socket closes, requests in progress finish, the mailboxes
drain to S3, and what cannot be uploaded before SHUTDOWN_TIMEOUT is spooled to disk
(signal handling in `mailroom.signals`).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict

from actors import ActorSystem
from actors.batching import BatchLimits
from actors.retry import Backoff, RestartPolicy
from config import Settings
from mailroom.health import CachedReport, health_report
from mailroom.metrics import Metrics
from mailroom.metrics import render as render_metrics
from mailroom.signals import Stopping
from mailroom.wiring import StoreHandle, open_spool, open_store
from store.spool import DeadLetterSpool
from web import create_app
from web.server import closing_connections_when, make_server

log = logging.getLogger("mailroom")


def build_system(
    settings: Settings,
    handle: StoreHandle,
    spool: DeadLetterSpool,
    metrics: Metrics,
    on_exhausted: Callable[[str], None] | None = None,
) -> ActorSystem:
    return ActorSystem(
        handle.store,
        spool,
        workers=settings.max_workers,
        max_queue=settings.max_queue,
        backoff=Backoff(budget=settings.upload_retry_seconds),
        restart_policy=RestartPolicy(
            max_restarts=settings.max_restarts, period=settings.restart_period
        ),
        batch_limits=BatchLimits(
            max_payloads=settings.batch_max_payloads,
            max_bytes=settings.batch_max_bytes,
            max_wait=settings.batch_max_wait_ms / 1000,
            gzip=settings.batch_gzip,
        ),
        observer=metrics,
        on_exhausted=on_exhausted,
    )


def stop_this_process(reason: str) -> None:
    """The supervision tree gave up: stop as on SIGTERM (refuse, drain, spool), then exit 1."""
    os.kill(os.getpid(), signal.SIGTERM)


def serve(settings: Settings, worker: int | None = None) -> int:
    """Run until SIGTERM or SIGINT, then drain the mailboxes and stop; return the exit code.

    `worker` is set in the children of a WorkerPool: they share the port (SO_REUSEPORT).
    """
    spool = open_spool(settings)
    spool.prepare()
    handle = open_store(settings, start_embedded=True)
    metrics = Metrics()
    system = build_system(settings, handle, spool, metrics, stop_this_process)
    system.start()
    draining = threading.Event()
    stopping = Stopping(draining)
    report = CachedReport(lambda: health_report(system, spool), max_age=1.0)
    metrics.sample_every(1.0, report.get)
    try:
        app = create_app(
            system.dispatcher(),
            settings,
            draining,
            health=lambda: {**report.get(), "draining": draining.is_set()},
            metrics=render_metrics,
            observer=metrics,
        )
        server = make_server(
            closing_connections_when(draining, app),
            port=settings.port,
            threads=settings.web_threads,
            channel_timeout=settings.channel_timeout,
            reuse_port=worker is not None,
        )
        stopping.install()
        log.info("settings: %s", settings.describe(), extra={"event": "settings"})
        if not settings.ingest_tokens:
            log.warning(
                "INGEST_TOKENS is not set: any token is accepted",
                extra={"event": "auth_disabled"},
            )
        log.info(
            "%sserving POST /payloads on port %d (ACK_MODE=%s); objects go to %s; spool in %s",
            "" if worker is None else f"worker {worker}: ",
            settings.port,
            settings.ack_mode,
            handle.describe(),
            spool.directory.resolve(),
            extra={"event": "serving", "port": settings.port},
        )
        _replay_in_background(spool, handle)
        server.run()
        stopping.disarm()
        server.close()
        log.info("stopped taking requests; draining mailboxes", extra={"event": "draining"})
    finally:
        stopping.disarm()
        elapsed = time.monotonic() - (stopping.since or time.monotonic())
        lost = system.drain(max(settings.shutdown_timeout - elapsed, 1.0))
        handle.close()
    took = time.monotonic() - (stopping.since or time.monotonic())
    if system.gave_up is not None or lost:
        log.critical(
            "shut down in %.1fs after a failure (%s); exiting with status 1",
            took,
            system.gave_up or f"{lost} payload(s) lost",
            extra={"event": "shut_down", "exit_code": 1},
        )
        return 1
    log.info("shut down cleanly in %.1fs", took, extra={"event": "shut_down", "exit_code": 0})
    return 0


def _replay_in_background(spool: DeadLetterSpool, handle: StoreHandle) -> None:
    """Upload what an earlier run spooled, without delaying the start."""
    if not spool.files():
        return

    def replay() -> None:
        result = spool.replay(handle.store.put)
        log.warning(
            "replayed the spool: %d payload(s) landed, %d still failing, from %d file(s)",
            result.landed,
            result.failed,
            result.files,
            extra={"event": "spool_replayed", **asdict(result)},
        )

    threading.Thread(target=replay, name="spool-replay", daemon=True).start()
