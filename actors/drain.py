"""How much may be owed at once so that a shutdown can still store it, at S3's current pace.

MAX_QUEUE bounds memory, but not time: with S3 at 100 ms, 8 uploaders store 80 payloads a
second, and 8,000 queued payloads take 100 s, so a SIGTERM with 25 s to drain would spool
most of them. Each stored unit reports how long it took (retries included) and how many
payloads it carried; admission keeps what is owed within what the uploaders store in a share
of the drain time at that pace, and answers 503 beyond it while S3 is slow.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

SMOOTHING = 0.1  # weight of each new upload in the moving averages
ASSUMED_UPLOAD_SECONDS = 0.1  # until uploads are measured: a slowish S3, so a burst at start
# cannot queue more than a drain can store; real figures replace it within a few dozen uploads
DRAIN_SHARE = 0.5  # of the shutdown timeout: the rest is margin for in-flight requests and noise


@dataclass(frozen=True, slots=True)
class DrainEstimate:
    payloads_per_second: float | None  # what the uploaders together store now; None: unknown
    limit: int | None  # payloads that may be owed at once; None: no budget (batched mode)
    uploads_measured: int = 0  # 0: the figures are the assumption, not yet a measurement


class DrainBudget:
    """Moving averages of upload time and size; safe from any thread."""

    def __init__(self, uploaders: int, drain_seconds: float) -> None:
        self._uploaders = uploaders
        self._seconds = drain_seconds * DRAIN_SHARE
        self._lock = threading.Lock()
        self._upload_seconds = ASSUMED_UPLOAD_SECONDS
        self._payloads_per_upload = 1.0
        self.measured = 0  # uploads recorded
        self._limit = self._compute_limit()

    def record(self, payloads: int, seconds: float) -> None:
        """One unit stored: `payloads` of them in `seconds`, retries included."""
        with self._lock:
            self._upload_seconds += SMOOTHING * (seconds - self._upload_seconds)
            self._payloads_per_upload += SMOOTHING * (payloads - self._payloads_per_upload)
            self.measured += 1
            self._limit = self._compute_limit()

    def limit(self) -> int:
        return self._limit  # one attribute read: no lock on the request path

    def estimate(self) -> DrainEstimate:
        with self._lock:
            return DrainEstimate(round(self._rate(), 1), self._limit, self.measured)

    def _rate(self) -> float:
        return self._uploaders * self._payloads_per_upload / max(self._upload_seconds, 1e-3)

    def _compute_limit(self) -> int:
        # At least one payload per uploader: a slow S3 is never a reason to admit nothing.
        return max(int(self._rate() * self._seconds), self._uploaders)
