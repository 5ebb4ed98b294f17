"""The uploader: takes payloads from its own mailbox, one at a time, and stores them."""

from __future__ import annotations

import logging
from typing import Any, Protocol

import pykka

from actors.messages import Payload

log = logging.getLogger(__name__)


class PayloadStore(Protocol):
    """What an uploader needs from storage (an `S3Store` in production, a fake in tests)."""

    def key_for(self, *, version: str, received_at: float, unique: str) -> Any: ...

    def save(self, key: Any, document: Any) -> None: ...


class UploaderActor(pykka.ThreadingActor):
    """Writes each payload it receives to the store; its mailbox is bounded by the router."""

    use_daemon_thread = True

    def __init__(self, slot: int, store: PayloadStore) -> None:
        super().__init__()
        self.slot = slot
        self._store = store
        self.stored = 0

    def __str__(self) -> str:
        return f"uploader[{self.slot}]"

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Payload):
            return self._upload(message)
        return super().on_receive(message)

    def _upload(self, payload: Payload) -> None:
        key = self._store.key_for(
            version=payload.version, received_at=payload.received_at, unique=payload.id
        )
        self._store.save(key, payload.document)
        self.stored += 1
