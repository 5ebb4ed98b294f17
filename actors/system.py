"""Starting the actors in a fixed order (uploaders, then the router) and stopping in reverse."""

from __future__ import annotations

import logging
from typing import Any

import pykka

from actors.messages import Status
from actors.router import RouterActor
from actors.uploader import PayloadStore, UploaderActor

log = logging.getLogger(__name__)


class ActorSystem:
    """Owns the router and its uploaders for the life of one serving process."""

    def __init__(self, store: PayloadStore, *, workers: int, max_queue: int) -> None:
        self._store = store
        self._workers = workers
        self._max_queue = max_queue
        self.uploaders: list[pykka.ActorRef[Any]] = []
        self.router: pykka.ActorRef[Any] | None = None

    def start(self) -> pykka.ActorRef[Any]:
        self.uploaders = [UploaderActor.start(i, self._store) for i in range(self._workers)]
        self.router = RouterActor.start(self.uploaders, self._max_queue)
        log.info(
            "actors started: %d uploaders, mailboxes of %d payloads each",
            self._workers,
            self._max_queue,
        )
        return self.router

    def status(self) -> Status:
        if self.router is None:
            return Status()
        return self.router.ask(Status(), timeout=5)

    def stop(self, timeout: float = 25.0) -> None:
        """Stop the router first (no new work), then let each uploader finish its mailbox."""
        if self.router is not None:
            self.router.stop(block=True, timeout=timeout)
        for ref in self.uploaders:
            try:
                ref.stop(block=True, timeout=timeout)
            except pykka.Timeout:
                log.error("uploader did not finish its mailbox within %.0fs", timeout)
        log.info("actors stopped")
