"""One granian worker: its mailroom (actors, S3 client, metrics) behind Falcon's ASGI app, and
its shutdown, timed from the signal.

granian, on SIGTERM, stops accepting, waits for every request in progress with no time limit,
only then sends ASGI `lifespan.shutdown` and runs `multiprocessing.util.Finalize` hooks. Were
the drain started there, a request waiting for S3 (ACK_MODE=stored) during an outage would
delay it by up to STORED_ACK_TIMEOUT, past SHUTDOWN_TIMEOUT. So the worker notes SIGTERM
itself and starts draining at once: admission closes, the mailboxes empty into S3, what is
left at the deadline is spooled, and every waiting request gets its answer from that; the
lifespan shutdown then only waits for the drain to end, by the deadline counted from the
signal, as under waitress.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing.util
import os
import signal
import threading
import time
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import Any

from config import Settings
from mailroom.heap import freeze_start_up
from mailroom.logs import configure_logging
from mailroom.process import ServingProcess

log = logging.getLogger("mailroom")

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
M_ARENA_MAX = -8  # mallopt's parameter number, from glibc's malloc.h
MALLOC_ARENAS = 2  # glibc gives each thread an arena of its own; keep few so RSS is given back


def worker_app() -> ASGIApp:
    """granian's factory, run in each forked worker: build this worker's mailroom."""
    from mailroom.metrics import MULTIPROC_ENV, forget_dead_processes
    from mailroom.process import build_process, stop_this_process

    early = EARLY or EarlySignal()  # a stop asked for while this worker starts is not lost
    settings = Settings.from_env()  # the main process has checked it already
    configure_logging(settings.log_level, settings.log_format)
    _limit_malloc_arenas()
    forget_dead_processes(os.environ[MULTIPROC_ENV])
    process = build_process(
        settings, start_embedded=False, on_exhausted=stop_this_process, asgi=True
    )
    stop = WorkerStop(process, settings.shutdown_timeout, early)
    # Should granian end the worker without a lifespan shutdown, the drain still runs.
    multiprocessing.util.Finalize(None, stop.finish, exitpriority=100)
    process.log_start("granian", f"worker {os.getpid()}: ")

    def startup() -> None:
        stop.arm()
        loop = asyncio.get_running_loop()
        process.on_event_loop(loop)
        freeze_start_up()
        kind = type(loop).__module__.split(".")[0]  # uvloop, as granian_server.py asks
        log.debug(
            "worker %d: answering on an %s event loop",
            os.getpid(),
            kind,
            extra={"event": "event_loop", "loop": kind},
        )

    return Lifespan(process.app, startup=startup, shutdown=stop.finish)


EARLY: EarlySignal | None = None


def listen_from_the_fork() -> None:
    """Have each worker note a stop signal from its first instant (see `EarlySignal`): the
    stop signals are blocked across granian's fork, and the new worker unblocks them only once
    it listens, so one sent meanwhile waits for it instead of reaching a handler that would
    change nothing. Called once in the main process, before granian starts its workers."""
    os.register_at_fork(before=_block, after_in_parent=_unblock, after_in_child=_listen)


def _block() -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)


def _unblock() -> None:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def _listen() -> None:
    global EARLY
    EARLY = EarlySignal()
    _unblock()


class EarlySignal:
    """SIGTERM or SIGINT while the worker is being built, before granian listens for them:
    noted, to be acted on once it does (a forked worker would otherwise run its parent's
    handler, which changes nothing here, and serve on until it is killed)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._note)

    def _note(self, signum: int, frame: FrameType | None) -> None:
        self.signum = signum


class WorkerStop:
    """Drains this worker's mailroom from the moment SIGTERM (or SIGINT) arrives."""

    def __init__(self, process: ServingProcess, timeout: float, early: EarlySignal) -> None:
        self._process = process
        self._timeout = timeout
        self._early = early
        self._lock = threading.RLock()  # the signal handler may interrupt `start` itself
        self._drain: threading.Thread | None = None
        self._since: float | None = None
        self._code = 0

    def arm(self) -> None:
        """Listen for the stop signals (in the loop's thread, after granian set its own).

        asyncio hears a signal through its wakeup fd, whatever the Python-level handler is,
        so granian's shutdown still runs when this handler replaces asyncio's no-op one. A
        signal noted while the worker was being built is raised again now, for both."""
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._on_signal)
        if self._early.signum is not None:
            signal.raise_signal(self._early.signum)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Later stop signals are ignored from here on, at the kernel: on Heroku (and with
        # Ctrl-C) each process gets the signal and the parent sends one more, and granian's
        # handler hangs its worker, holding the GIL, when it is called a third time (its
        # WorkerSignal sends on a channel of one that nothing reads any more). That hang
        # froze the drain until granian killed the worker, payloads still in memory.
        for other in STOP_SIGNALS:
            signal.signal(other, signal.SIG_IGN)
        self.start(signal.Signals(signum).name)

    def start(self, why: str | None = None) -> None:
        """Start the drain (once), its deadline SHUTDOWN_TIMEOUT from now."""
        with self._lock:
            if self._drain is not None:
                return
            self._since = time.monotonic()
            self._process.draining.set()  # new POSTs: 503, their connection closed
            drain = threading.Thread(target=self._run, args=(why,), name="drain")
            drain.daemon = True
            self._drain = drain
            drain.start()

    def _run(self, why: str | None) -> None:
        # Logged here, not in the handler: a signal handler runs inside whichever request's
        # task was running, and its line would carry that request's id.
        if why is not None:
            log.info(
                "worker %d received %s: refusing new collections and draining",
                os.getpid(),
                why,
                extra={"event": "shutdown_requested", "signal": why},
            )
        self._code = self._process.stop(self._timeout - 1)

    def finish(self) -> None:
        """Wait for the drain (starting it if no signal did), then write the last access
        lines and counts (the loop has answered its last request by now); exit non-zero if
        it failed, so granian sees the worker failed (and respawns it while serving)."""
        self.start()
        assert self._drain is not None and self._since is not None
        self._drain.join(max(self._since + self._timeout - time.monotonic(), 0.1))
        self._process.close_logs()
        if self._code:
            logging.shutdown()
            os._exit(self._code)


class Lifespan:
    """The ASGI app as granian calls it: HTTP goes straight to Falcon's app; the lifespan
    protocol arms the worker's stop at startup and waits for its drain at shutdown."""

    def __init__(
        self, app: ASGIApp, *, startup: Callable[[], None], shutdown: Callable[[], None]
    ) -> None:
        self._app = app
        self._startup = startup
        self._shutdown = shutdown

    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Awaitable[None]:
        if scope["type"] != "lifespan":
            return self._app(scope, receive, send)  # no coroutine of its own per request
        return self._lifespan(receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            event = await receive()
            if event["type"] == "lifespan.startup":
                self._startup()
                await send({"type": "lifespan.startup.complete"})
            elif event["type"] == "lifespan.shutdown":
                await asyncio.get_running_loop().run_in_executor(None, self._shutdown)
                await send({"type": "lifespan.shutdown.complete"})
                return


def _limit_malloc_arenas() -> None:
    """Cap glibc's per-thread malloc arenas, so memory a burst of threads used is given back."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(M_ARENA_MAX, MALLOC_ARENAS)
    except (OSError, AttributeError):  # not glibc: nothing to tune
        pass
