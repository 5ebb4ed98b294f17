"""One serving process's parts, whichever HTTP server runs it: spool, store, metrics, the
supervision tree and the WSGI app; and how they stop. Built once per process (per worker)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from actors import ActorSystem
from actors.batching import BatchLimits
from actors.retry import Backoff, RestartPolicy
from config import Settings
from mailroom.access_log import LOGGER, AccessLogWriter
from mailroom.health import CachedReport, health_report
from mailroom.logs import log_settings
from mailroom.metrics import Metrics, renderer
from mailroom.progress import ReplayProgress
from mailroom.s3_check import check_at_start, watch
from mailroom.wiring import StoreHandle, open_spool, open_store
from rates import limiter_for
from store.replay import ReplayTally, replay
from store.spool import DeadLetterSpool
from web import create_app, create_asgi_app

log = logging.getLogger("mailroom")

# In batched mode under granian, how long an admitted collection may wait to be told to the
# router with others: the router and an uploader are woken at most this often per worker,
# not once a request (what a 202 says is unchanged: the collection is owed from admission).
TELL_EVERY = 0.002


@dataclass
class ServingProcess:
    settings: Settings
    spool: DeadLetterSpool
    handle: StoreHandle
    system: ActorSystem
    draining: threading.Event
    app: Callable[..., Any]
    metrics: Metrics
    access: AccessLogWriter | None = None

    def log_start(self, server: str, worker: str = "") -> None:
        settings = self.settings
        log_settings(log, settings)
        if not settings.ingest_tokens:
            # Against a real bucket that is a deployment accepting anyone's data; with the
            # embedded store (make run, no settings) it is how a first try is meant to work.
            log.log(
                logging.INFO if settings.uses_embedded_store else logging.WARNING,
                "INGEST_TOKENS is not set: any token is accepted",
                extra={"event": "auth_disabled"},
            )
        if settings.web_threads is not None and settings.server == "granian":
            log.warning(
                "WEB_THREADS=%d is ignored: it sizes waitress's request threads, and granian "
                "serves mailroom on one event loop per worker (SERVER=granian)",
                settings.web_threads,
                extra={"event": "setting_ignored"},
            )
        log.info(
            "%sserving POST /payloads on port %d with %s (ACK_MODE=%s); objects go to %s; "
            "spool in %s",
            worker,
            settings.port,
            server,
            settings.ack_mode,
            self.handle.describe(),
            self.spool.directory.resolve(),
            extra={"event": "serving", "port": settings.port, "server": server},
        )

    def on_event_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Requests are answered on this loop (granian): in batched mode, the collections it
        admits within TELL_EVERY seconds are told to the router together (granian hands the
        loop about one request a turn, so a turn alone gathers little)."""
        if self.system.batching:
            self.system.dispatcher().tell_together(lambda tell: loop.call_later(TELL_EVERY, tell))

    def close_logs(self) -> None:
        """Once no request is answered any more: the last access lines and counts written."""
        if self.access is not None:
            self.access.close()
        self.metrics.save_tally()

    def stop(self, timeout: float) -> int:
        """Drain the actors within `timeout` s; return the exit code (1 after a failure)."""
        self.draining.set()
        started = time.monotonic()
        lost = self.system.drain(max(timeout, 1.0))
        self.handle.close()
        if self.access is not None:
            self.access.flush()  # requests may still be answered (granian): see close_logs
        self.metrics.save_tally()
        took = time.monotonic() - started
        if self.system.gave_up is not None or lost:
            log.critical(
                "shut down after a failure (%s); exiting with status 1",
                self.system.gave_up or f"{lost} payload(s) lost",
                extra={"event": "shut_down", "exit_code": 1, "drain_seconds": round(took, 2)},
            )
            return 1
        log.info(
            "shut down cleanly: drained in %.1fs",
            took,
            extra={"event": "shut_down", "exit_code": 0},
        )
        return 0


def stop_this_process(reason: str) -> None:
    """The supervision tree gave up: stop as on SIGTERM (refuse, drain, spool), then exit 1.

    Under waitress that is mailroom's own handler; under granian, the worker's, which stops
    that worker gracefully and runs its drain, and granian respawns it.
    """
    os.kill(os.getpid(), signal.SIGTERM)


def build_process(
    settings: Settings,
    *,
    start_embedded: bool,
    on_exhausted: Callable[[str], None],
    asgi: bool = False,
) -> ServingProcess:
    """Everything one process serves with, started (actors running, replay under way).

    `asgi`: the app is Falcon's ASGI app (granian) rather than its WSGI app (waitress)."""
    spool = open_spool(settings)
    spool.prepare()
    handle = open_store(settings, start_embedded=start_embedded)
    checking = not settings.uses_embedded_store and settings.s3_check != "off"
    failure = (
        check_at_start(handle.store, handle.describe(), settings.s3_check) if checking else None
    )
    metrics = Metrics()
    limiter = limiter_for(settings, observer=metrics)  # per process, box or fleet
    system = build_system(settings, handle, spool, metrics, on_exhausted)
    system.start()
    if checking:
        system.delivery.s3_checked(failure)
        watch(
            handle.store,
            lambda: system.delivery.s3_error,
            lambda: system.delivery.s3_checked(None),
            stop=threading.Event(),  # a daemon thread for the life of the process
        )
    draining = threading.Event()
    report = CachedReport(
        lambda: {**health_report(system, spool), "rates": limiter.status()}, max_age=1.0
    )
    metrics.sample_every(1.0, report.get, chore=limiter.recheck)
    access = open_access_log(settings)
    app = (create_asgi_app if asgi else create_app)(
        system.dispatcher(),
        settings,
        draining,
        health=lambda: {**report.get(), "draining": draining.is_set()},
        metrics=renderer(metrics),
        observer=metrics,
        access=access,
        rates=limiter,
    )
    replay_in_background(spool, handle, settings.max_workers, metrics)
    return ServingProcess(settings, spool, handle, system, draining, app, metrics, access)


def open_access_log(settings: Settings) -> AccessLogWriter | None:
    """The access log's writer; None with ACCESS_LOG=false, or LOG_LEVEL above INFO (its
    lines are INFO on `mailroom.access`)."""
    if not settings.access_log or not logging.getLogger(LOGGER).isEnabledFor(logging.INFO):
        return None
    return AccessLogWriter(settings.log_format)


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
            line_ids=settings.batch_line_ids,
        ),
        observer=metrics,
        on_exhausted=on_exhausted,
        drain_seconds=settings.shutdown_timeout,
        tenant_share=settings.share,
    )


def replay_in_background(
    spool: DeadLetterSpool, handle: StoreHandle, concurrency: int, metrics: Metrics
) -> None:
    """Upload what an earlier run spooled, as `mailroom replay` does, without delaying the start."""
    if not spool.files():
        return

    def run() -> None:
        progress = ReplayProgress(spool.census())  # log lines, never a bar
        counted = {"landed": 0, "quarantined": 0}

        def report(tally: ReplayTally) -> None:
            with lock:  # tallies arrive from several threads, perhaps out of order
                landed = max(tally.landed - counted["landed"], 0)
                quarantined = max(tally.quarantined - counted["quarantined"], 0)
                counted["landed"] += landed
                counted["quarantined"] += quarantined
            metrics.replay_progressed(landed, quarantined)
            progress(tally)

        lock = threading.Lock()
        tally = replay(spool, handle.store.put, concurrency=concurrency, progress=report)
        report(tally)
        log.warning(
            "replayed the spool: %d payload(s) in %d object(s) landed, %d payload(s) still "
            "failing (kept in the spool), %d unreadable line(s) quarantined, from %d file(s)",
            tally.landed,
            tally.objects_landed,
            tally.failed,
            tally.quarantined,
            tally.files,
            extra={"event": "spool_replayed", **asdict(tally)},
        )

    threading.Thread(target=run, name="spool-replay", daemon=True).start()
