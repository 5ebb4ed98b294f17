"""`mailroom serve`: one serving process, from settings to a listening socket and back down.

Shutdown (Heroku sends SIGTERM, then SIGKILL 30 s later; waitress installs no handler): on the
first SIGTERM or SIGINT every new POST is answered 503 with `Connection: close` for a short
grace period, then the listening socket closes, requests in progress finish, the mailboxes
drain to S3, and what cannot be uploaded before SHUTDOWN_TIMEOUT is spooled to disk. A second
signal skips the grace period.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import asdict
from types import FrameType

from actors import ActorSystem
from actors.batching import BatchLimits
from actors.retry import Backoff
from actors.supervisor import RestartPolicy
from config import Settings
from mailroom.wiring import StoreHandle, open_spool, open_store
from store.spool import DeadLetterSpool
from web import create_app
from web.server import closing_connections_when, make_server

log = logging.getLogger("mailroom")

GRACE_SECONDS = 1.0


def build_system(settings: Settings, handle: StoreHandle, spool: DeadLetterSpool) -> ActorSystem:
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
    )


def serve(settings: Settings, worker: int | None = None) -> int:
    """Run until SIGTERM or SIGINT, then drain the mailboxes and stop; return the exit code.

    `worker` is set in the children of a WorkerPool: they share the port (SO_REUSEPORT).
    """
    spool = open_spool(settings)
    spool.prepare()
    handle = open_store(settings, start_embedded=True)
    system = build_system(settings, handle, spool)
    system.start()
    draining = threading.Event()
    stopping = _Stopping(draining)
    try:
        app = create_app(system.dispatcher(), settings, draining)
        server = make_server(
            closing_connections_when(draining, app),
            port=settings.port,
            threads=settings.web_threads,
            reuse_port=worker is not None,
        )
        stopping.install()
        log.info("settings: %s", settings.describe(), extra={"event": "settings"})
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
        system.drain(max(settings.shutdown_timeout - elapsed, 1.0))
        handle.close()
    log.info("shut down cleanly in %.1fs", time.monotonic() - (stopping.since or time.monotonic()))
    return 0


class _Stopping:
    """Signal handling: the first signal starts the grace period; SIGALRM ends it.

    Heroku may deliver SIGTERM to every process of a dyno (and a parent passes it on), so a
    repeated SIGTERM changes nothing; a second Ctrl-C (SIGINT) skips the grace period. Once
    the server has stopped, signals are only logged: nothing may interrupt the drain.
    """

    def __init__(self, draining: threading.Event) -> None:
        self._draining = draining
        self.since: float | None = None

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGALRM, self._leave)

    def disarm(self) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM):
            signal.signal(signum, self._ignore)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.since is not None:
            if signum == signal.SIGINT:
                log.warning("received SIGINT again: skipping the grace period")
                raise SystemExit(0)
            log.info("received %s again: already shutting down", name)
            return
        self.since = time.monotonic()
        self._draining.set()
        log.info(
            "received %s: answering 503 for %.1fs, then draining",
            name,
            GRACE_SECONDS,
            extra={"event": "shutdown_requested", "signal": name},
        )
        signal.setitimer(signal.ITIMER_REAL, GRACE_SECONDS)

    def _leave(self, signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)  # waitress's run() catches it and finishes requests in progress

    def _ignore(self, signum: int, frame: FrameType | None) -> None:
        log.info("received %s while draining: carrying on", signal.Signals(signum).name)


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
