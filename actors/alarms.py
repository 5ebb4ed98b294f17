"""Batch deadlines (BATCH_MAX_WAIT_MS) on one thread for the whole process.

A thread per open batch (`threading.Timer`) made the thread count follow the number of
batches opened within a wait: with PARTITION_BY and a client making up values, a thread per
payload. Here every deadline is an entry in one heap served by one thread; a cancelled one
is dropped, and the heap rebuilt when cancelled entries outnumber the live ones, so it holds
about as many entries as there are open batches.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class Alarms:
    """Calls each callback once its delay has passed, unless cancelled first."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._heap: list[tuple[float, int]] = []
        self._live: dict[int, Callable[[], None]] = {}
        self._numbers = itertools.count()
        self._changed = threading.Condition()
        self._stopped = False
        self._thread: threading.Thread | None = None

    def __len__(self) -> int:
        with self._changed:
            return len(self._live)

    def set(self, delay: float, callback: Callable[[], None]) -> int:
        """Call `callback` (on the alarms' thread) in `delay` seconds; returns a handle."""
        with self._changed:
            if self._thread is None and not self._stopped:
                self._thread = threading.Thread(target=self._run, name="alarms", daemon=True)
                self._thread.start()
            number = next(self._numbers)
            self._live[number] = callback
            heapq.heappush(self._heap, (self._clock() + delay, number))
            if self._heap[0][1] == number:
                self._changed.notify()
            return number

    def cancel(self, handle: int) -> None:
        with self._changed:
            if (
                self._live.pop(handle, None) is not None
                and len(self._heap) > 2 * len(self._live) + 64
            ):
                self._heap = [entry for entry in self._heap if entry[1] in self._live]
                heapq.heapify(self._heap)

    def stop(self) -> None:
        """Call nothing more; the thread ends."""
        with self._changed:
            self._stopped = True
            self._live.clear()
            self._heap.clear()
            self._changed.notify()

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._stopped and (not self._heap or self._heap[0][0] > self._clock()):
                    wait = self._heap[0][0] - self._clock() if self._heap else None
                    self._changed.wait(wait)
                if self._stopped:
                    return
                _, number = heapq.heappop(self._heap)
                callback = self._live.pop(number, None)
            if callback is not None:
                try:
                    callback()
                except Exception:  # one failing callback must not end every deadline
                    log.exception("alarms: a callback failed")
