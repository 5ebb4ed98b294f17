"""How a replay shows its progress: a bar on a terminal, structured log lines otherwise.

An operator replaying thousands of objects wants to know at once that it is moving, how fast,
and when it will be done; a log pipeline wants the same as fields, every few seconds, not a
bar redrawn a hundred times a second.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import IO

from tqdm import tqdm

from store.replay import ReplayTally
from store.spool import Census

log = logging.getLogger("mailroom")

LOG_EVERY_SECONDS = 5.0


class ReplayProgress:
    """Called with each tally as objects finish (from any thread); `close` when done."""

    def __init__(
        self,
        census: Census,
        *,
        stream: IO[str] | None = None,
        interval: float = LOG_EVERY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._census = census
        self._interval = interval
        self._clock = clock
        self._started = self._last_log = clock()
        self._lock = threading.Lock()
        self._shown = 0
        self._bar = (
            tqdm(total=census.objects, unit="obj", desc="replaying", file=stream, smoothing=0.1)
            if stream is not None and stream.isatty()
            else None
        )
        log.info(
            "replay: %d object(s) holding %d payload(s) in %d file(s) waiting in the spool",
            census.objects,
            census.payloads,
            census.files,
            extra={
                "event": "replay_started",
                "objects": census.objects,
                "payloads": census.payloads,
                "files": census.files,
            },
        )

    def __call__(self, tally: ReplayTally) -> None:
        with self._lock:
            if self._bar is not None:
                done = tally.objects_done
                if done > self._shown:
                    self._bar.update(done - self._shown)
                    self._shown = done
                return
            now = self._clock()
            if now - self._last_log >= self._interval:
                self._last_log = now
                self._log(tally, now)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def _log(self, tally: ReplayTally, now: float) -> None:
        elapsed = max(now - self._started, 1e-9)
        rate = tally.objects_done / elapsed
        left = max(self._census.objects - tally.objects_done, 0)
        eta = left / rate if rate > 0 else None
        log.info(
            "replay: %d of %d object(s) done (%d payload(s) landed, %d failed), %.0f/s, %s",
            tally.objects_done,
            self._census.objects,
            tally.landed,
            tally.failed,
            rate,
            f"~{eta:.0f} s left" if eta is not None else "no estimate yet",
            extra={
                "event": "replay_progress",
                "objects_done": tally.objects_done,
                "objects_total": self._census.objects,
                "payloads_landed": tally.landed,
                "payloads_failed": tally.failed,
                "rate_per_s": round(rate, 1),
                "eta_s": None if eta is None else round(eta, 1),
            },
        )
