"""Signals for a serving process: SIGTERM or SIGINT start a graceful stop, then drain."""

from __future__ import annotations

import logging
import signal
import threading
import time
from types import FrameType

log = logging.getLogger("mailroom")

GRACE_SECONDS = 1.0


class Stopping:
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
