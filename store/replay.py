"""Replay: upload what the spool holds, many objects at once, each payload once.

Files are claimed one by one (a rename: no other replayer can take them), their objects
uploaded by a pool of threads as wide as the uploaders, and a file is released (what failed
written back, the file removed) once every one of its objects is done. At most
`concurrency x 4` objects are in flight, so a spool of any size replays in bounded memory
beyond the file being read.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from store.objects import S3Object
from store.spool import Claimed, DeadLetterSpool

log = logging.getLogger(__name__)

ATTEMPTS = 4  # per object and replay; what still fails stays in the spool
RETRY_BASE = 0.2  # seconds, doubling
WINDOW_PER_THREAD = 4  # objects read and waiting for a thread, per thread


@dataclass(frozen=True, slots=True)
class ReplayTally:
    """How far a replay has come: objects and payloads done so far."""

    objects_landed: int = 0
    objects_failed: int = 0
    landed: int = 0  # payloads
    failed: int = 0  # payloads
    files: int = 0
    quarantined: int = 0  # lines moved aside, unreadable
    elsewhere: int = 0  # files left in place: spooled for another destination

    @property
    def objects_done(self) -> int:
        return self.objects_landed + self.objects_failed


ProgressCallback = Callable[[ReplayTally], None]


class _FileInProgress:
    """One claimed file: released when its last object is done."""

    def __init__(self, claimed: Claimed) -> None:
        self.claimed = claimed
        self.left = len(claimed.objects)
        self.failed: list[S3Object] = []


def replay(
    spool: DeadLetterSpool,
    put: Callable[[S3Object], None],
    *,
    concurrency: int,
    progress: ProgressCallback | None = None,
) -> ReplayTally:
    """Upload every spooled object with `put`, `concurrency` at a time; keep what raised."""
    return _Replay(spool, put, concurrency, progress).run()


class _Replay:
    def __init__(
        self,
        spool: DeadLetterSpool,
        put: Callable[[S3Object], None],
        concurrency: int,
        progress: ProgressCallback | None,
    ) -> None:
        self._spool = spool
        self._put = put
        self._concurrency = max(concurrency, 1)
        self._progress = progress or (lambda tally: None)
        self._lock = threading.Lock()
        self._tally = ReplayTally()
        self._window = threading.BoundedSemaphore(self._concurrency * WINDOW_PER_THREAD)

    def run(self) -> ReplayTally:
        self._spool.reclaim_abandoned()
        with ThreadPoolExecutor(self._concurrency, thread_name_prefix="replay") as pool:
            for path in self._spool.files():
                where = self._spool.bound_elsewhere(path)
                if where is not None:
                    self._leave(path.name, str(where))
                    continue
                claimed = self._spool.claim(path)
                if claimed is None:
                    continue  # another replayer claimed it first
                self._count(files=1, quarantined=claimed.quarantined)
                if not claimed.objects:
                    self._spool.release(claimed, [])
                    continue
                in_progress = _FileInProgress(claimed)
                for obj in claimed.objects:
                    self._window.acquire()
                    pool.submit(self._upload, obj, in_progress)
        return self._tally

    def _upload(self, obj: S3Object, in_progress: _FileInProgress) -> None:
        try:
            try:
                self._put_retrying(obj)
            except Exception as error:  # whatever the cause, it is kept for the next replay
                log.warning("replay of %s failed: %s", obj.key, error)
                self._done(obj, in_progress, landed=False)
            else:
                self._done(obj, in_progress, landed=True)
        except Exception:
            log.exception("replay: could not release %s", in_progress.claimed.path)
        finally:
            self._window.release()

    def _put_retrying(self, obj: S3Object) -> None:
        """A few attempts for what may pass later (a SlowDown, a reset): a wide replay is
        just the burst that makes S3 throttle."""
        for attempt in range(ATTEMPTS):
            try:
                self._put(obj)
                return
            except Exception as error:
                if attempt + 1 == ATTEMPTS or not getattr(error, "retryable", True):
                    raise
                time.sleep(random.uniform(0, RETRY_BASE * 2**attempt))  # full jitter

    def _done(self, obj: S3Object, in_progress: _FileInProgress, *, landed: bool) -> None:
        with self._lock:
            if not landed:
                in_progress.failed.append(obj)
            in_progress.left -= 1
            last = in_progress.left == 0
            t = self._tally
            if landed:
                t = replace(t, objects_landed=t.objects_landed + 1, landed=t.landed + obj.payloads)
            else:
                t = replace(t, objects_failed=t.objects_failed + 1, failed=t.failed + obj.payloads)
            self._tally = now = t
        if last:  # its claim is released only when nothing of it is in flight
            self._spool.release(in_progress.claimed, in_progress.failed)
        self._progress(now)

    def _leave(self, name: str, where: str) -> None:
        log.warning(
            "replay: left %s in the spool: its objects were spooled for %s, not for %s where "
            "this process uploads; replay them from a process configured for that destination",
            name,
            where,
            self._spool.destination,
            extra={"event": "replay_elsewhere", "file": name, "destination": where},
        )
        with self._lock:
            self._tally = replace(self._tally, elsewhere=self._tally.elsewhere + 1)

    def _count(self, *, files: int, quarantined: int) -> None:
        with self._lock:
            t = self._tally
            self._tally = replace(t, files=t.files + files, quarantined=t.quarantined + quarantined)
