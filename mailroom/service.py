"""`mailroom serve`: one serving process, from settings to a listening socket and back down."""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType

from actors import ActorSystem, Dispatcher
from config import Settings
from mailroom.wiring import open_store
from web import create_app
from web.server import make_server

log = logging.getLogger("mailroom")


def serve(settings: Settings) -> int:
    """Run until SIGTERM or SIGINT, then drain the mailboxes and stop; return the exit code."""
    handle = open_store(settings, start_embedded=True)
    system = ActorSystem(handle.store, workers=settings.max_workers, max_queue=settings.max_queue)
    router = system.start()
    try:
        app = create_app(Dispatcher(router), settings)
        server = make_server(app, port=settings.port, threads=settings.web_threads)
        _stop_on_signals()
        log.info("settings: %s", settings.describe())
        log.info(
            "serving POST /payloads on port %d; objects go to %s",
            settings.port,
            handle.describe(),
        )
        server.run()
        log.info("stopped taking requests; draining mailboxes")
    finally:
        system.stop()
        handle.close()
    log.info("shut down cleanly")
    return 0


def _stop_on_signals() -> None:
    """waitress installs no handlers; turn SIGTERM (Heroku's stop) into a clean exit of run()."""

    def stop(signum: int, frame: FrameType | None) -> None:
        log.info("received %s", signal.Signals(signum).name)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
