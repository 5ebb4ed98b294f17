"""What the actors report about their work: metrics implement it, tests may ignore it."""

from __future__ import annotations

from typing import Protocol


class ActorObserver(Protocol):
    def uploaded(self, payloads: int, seconds: float, batched: bool) -> None: ...

    def upload_failed(self, retryable: bool) -> None: ...

    def upload_retried(self) -> None: ...

    def spooled(self, payloads: int) -> None: ...

    def spool_failed(self) -> None: ...

    def restarted(self) -> None: ...

    def escalated(self) -> None: ...


class NoActorObserver:
    def uploaded(self, payloads: int, seconds: float, batched: bool) -> None:
        pass

    def upload_failed(self, retryable: bool) -> None:
        pass

    def upload_retried(self) -> None:
        pass

    def spooled(self, payloads: int) -> None:
        pass

    def spool_failed(self) -> None:
        pass

    def restarted(self) -> None:
        pass

    def escalated(self) -> None:
        pass
