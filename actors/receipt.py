"""A request's receipt: counts its payloads down as they land or are spooled (ACK_MODE=stored)."""

from __future__ import annotations

import threading
from collections.abc import Callable


class Receipt:
    """Counts down as the payloads of one request land or are spooled (for ACK_MODE=stored).

    A synchronisation point (like a future), shared on purpose between the request's thread
    and the uploaders; the ledger records each payload into it exactly once.
    """

    def __init__(self, expected: int) -> None:
        self._pending = expected
        self.landed = 0
        self.spooled = 0
        self.existed = 0  # landed, on a key that already held it (a repeat)
        self.locations: list[tuple[str, int | None] | None] = [None] * expected
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._callbacks: list[Callable[[], None]] = []

    def record(
        self,
        *,
        landed: bool,
        start: int,
        stop: int,
        key: str | None = None,
        first_line: int | None = None,
        existed: bool = False,
    ) -> None:
        """Payloads start..stop durable: `key` is the object they landed under, and
        `first_line` the line of the first of them in that object (None: each payload is
        an object of its own)."""
        count = stop - start
        with self._lock:
            if landed:
                self.landed += count
                self.existed += count if existed else 0
                if key is not None:
                    for index in range(max(start, 0), min(stop, len(self.locations))):
                        line = None if first_line is None else first_line + index - start
                        self.locations[index] = (key, line)
            else:
                self.spooled += count
            self._pending -= count
            if self._pending > 0 or self._done.is_set():
                return
            self._done.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    def wait(self, timeout: float) -> bool:
        """True once every payload is accounted for (landed or spooled) within `timeout`."""
        return self._done.wait(timeout)

    def when_done(self, callback: Callable[[], None]) -> None:
        """Call `callback` (from whichever thread settles the last payload, or now if that
        already happened), so an event loop can wait without a thread."""
        with self._lock:
            if not self._done.is_set():
                self._callbacks.append(callback)
                return
        callback()
